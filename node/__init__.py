"""The opus node: storage, transaction pool, authoring, import, finality, RPC and CLI."""
