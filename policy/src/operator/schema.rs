//! The JSON Schema of one policy file ([`super::PolicyDocument`]), generated from the same serde
//! types the parser uses (schemars honours `deny_unknown_fields`, `rename_all` and `untagged`), so
//! the schema cannot drift from what is accepted. Range checks done by validation (e.g. memory
//! at least 4M) are described in the field docs, not in the schema.

use super::PolicyDocument;

/// The schema as JSON.
pub fn json_schema() -> serde_json::Value {
    let mut s = serde_json::to_value(schemars::schema_for!(PolicyDocument)).unwrap_or_default();
    if let Some(o) = s.as_object_mut() {
        o.insert(
            "title".into(),
            serde_json::Value::String(
                "Stockade operator policy (stockade-policy(5)), version 1".into(),
            ),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_closes_every_section() {
        let s = super::json_schema();
        let text = s.to_string();
        assert!(text.contains("\"additionalProperties\":false"));
        for k in [
            "filesystem",
            "network",
            "trust",
            "risk",
            "plugin",
            "signer",
            "hooks",
        ] {
            assert!(s["properties"][k].is_object(), "{k}");
        }
        assert!(s["required"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "version"));
    }
}
