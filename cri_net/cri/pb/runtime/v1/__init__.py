"""Generated package (scripts/gen_protos.py); do not edit."""
