//! The fixed host-API capability set (seed 000), certificate scopes and their capability ceilings.
