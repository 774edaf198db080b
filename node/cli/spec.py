"""``opus build-spec``: a chain spec as JSON (``--raw``: with its exact genesis state)."""

from __future__ import annotations

import argparse
import json
import sys

from genesis import build_genesis, load_spec
from genesis.builder import genesis_state
from genesis.spec import spec_to_json
from node.cli.common import chain_name


def build_spec(args: argparse.Namespace) -> int:
    spec = load_spec(chain_name(args))
    if args.raw or spec.raw is not None:
        document = spec_to_json(spec, genesis_state(spec))
    else:
        build_genesis(spec)  # refuse a spec whose genesis cannot be built
        document = spec_to_json(spec)
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0
