"""A scriptable fake CNI plugin run through the real exec path, and the harness that drives it.

`fakeplugin.py` is the plugin itself (installed as real executables by `harness.FakeCNI`);
`harness.py` installs it under any names, writes its script and reads back what it saw.
"""
