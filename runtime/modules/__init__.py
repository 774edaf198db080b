"""The runtime's modules. Importing this package registers every call and event."""

from runtime.modules import (  # noqa: F401  (imported for their registrations)
    balances,
    licensing,
    provenance,
    royalties,
    system,
    usage,
    validators,
)

MODULE_NAMES = ("system", "balances", "validators", "provenance", "licensing", "royalties", "usage")
