"""Unit tests need no root and no host network; the `fakecni` fixture comes from the
`tests.fakeplugin.fixture` plugin (pyproject's addopts)."""
