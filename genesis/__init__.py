"""Chain specs and the genesis builder."""

from genesis.builder import Genesis, build_genesis
from genesis.spec import ChainSpec, ChainSpecError, dev_spec, load_spec, local_spec

__all__ = ["ChainSpec", "ChainSpecError", "Genesis", "build_genesis", "dev_spec", "load_spec",
           "local_spec"]
