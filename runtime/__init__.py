"""Opus Chain's runtime: the deterministic state transition function.

Imports only the standard library, msgpack and pynacl. No I/O, clocks,
randomness, floats or iteration over unordered sets: the same blocks give the
same state on every machine.
"""
