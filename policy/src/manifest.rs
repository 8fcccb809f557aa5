//! The plugin manifest (`manifest.json`, seed 000): parse, validate, hand over a validated type.
