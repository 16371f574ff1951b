"""A stand-in for torchvision in tests (see tests/stand_ins/README.md): only the names spandrel
imports, each raising if called."""
