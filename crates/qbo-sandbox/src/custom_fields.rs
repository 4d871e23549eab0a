//! Which custom fields QBO sends. A form keeps up to three legacy custom fields (String,
//! DefinitionId 1 to 3) and, on QBO Advanced, more "enhanced" ones of any type. QBO sends the
//! enhanced ones only to a request with `include=enhancedAllCustomFields`; without it a client
//! sees the legacy fields alone, so a loader that forgets it silently misses the rest.

use std::collections::HashMap;

use serde_json::Value;

/// The `include` value that asks for every custom field.
pub const ALL: &str = "enhancedAllCustomFields";

/// Whether the request asked for every custom field (QBO takes a comma-separated list).
pub fn wants_all(params: &HashMap<String, String>) -> bool {
    params
        .get("include")
        .is_some_and(|v| v.split(',').any(|x| x == ALL))
}

fn is_legacy(field: &Value) -> bool {
    let slot = field["DefinitionId"]
        .as_str()
        .and_then(|d| d.parse::<u8>().ok());
    field["Type"] == "StringType" && matches!(slot, Some(1..=3))
}

/// The record as the request gets it: all its custom fields, or the legacy ones only.
pub fn serve(mut record: Value, all: bool) -> Value {
    if !all {
        if let Some(fields) = record.get_mut("CustomField").and_then(Value::as_array_mut) {
            fields.retain(is_legacy);
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_legacy_fields_without_the_include() {
        let r = json!({ "Id": "3", "CustomField": [
            { "DefinitionId": "1", "Type": "StringType", "StringValue": "a" },
            { "DefinitionId": "2", "Type": "StringType", "StringValue": "b" },
            { "DefinitionId": "1000000001", "Type": "StringType", "StringValue": "c" },
            { "DefinitionId": "1000000002", "Type": "NumberType", "NumberValue": 4 },
        ]});
        let legacy = serve(r.clone(), false);
        assert_eq!(legacy["CustomField"].as_array().unwrap().len(), 2);
        assert_eq!(serve(r.clone(), true), r);
        let mut params = HashMap::new();
        assert!(!wants_all(&params));
        params.insert("include".into(), "foo,enhancedAllCustomFields".into());
        assert!(wants_all(&params));
        params.insert("include".into(), "enhancedallcustomfields".into());
        assert!(!wants_all(&params), "as strict as QBO: the exact spelling");
    }
}
