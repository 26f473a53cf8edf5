"""The package's version (setup.py and package.xml carry the same), written into exported graphs."""

__version__ = '0.1.0'
