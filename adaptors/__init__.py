"""Network adaptors behind cri_net.network: `cri` (pods) and `native` (bridge networks for
plain containers). Each owns a CNIOperator over its own files of the conf dir."""

NATIVE_FILE_PREFIX = "crinet-"
