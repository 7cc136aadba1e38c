//! The `.proto` files must compile with stock `protoc`, not only with the
//! lenient `protox` this crate uses: users generate stubs in other
//! languages from them. One rule protoc enforces and protox does not: inside
//! a service, a type name is looked up among the service's methods first,
//! so `rpc Call(Call)` fails ("Call" is not a message type). Types named
//! like a method of their service must be fully qualified (`.pkg.Call`).

use std::path::PathBuf;

/// `(method, [request type, response type])` for each `rpc` of each service.
fn services(text: &str) -> Vec<Vec<(String, Vec<String>)>> {
    let mut services = Vec::new();
    let mut current: Option<Vec<(String, Vec<String>)>> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("service ") {
            current = Some(Vec::new());
        } else if line.starts_with('}') {
            services.extend(current.take());
        } else if let (Some(methods), Some(rest)) = (current.as_mut(), line.strip_prefix("rpc ")) {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let types = rest
                .split(['(', ')'])
                .skip(1)
                .step_by(2)
                .map(|t| t.trim().trim_start_matches("stream ").trim().to_string())
                .collect();
            methods.push((name, types));
        }
    }
    services
}

#[test]
fn no_rpc_type_is_shadowed_by_a_method_name() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/agora/v1");
    let mut checked = 0;
    for name in ["mesos", "scheduler", "agent", "executor"] {
        let path = root.join(format!("{name}.proto"));
        let text = std::fs::read_to_string(&path).expect("proto file readable");
        for service in services(&text) {
            let methods: Vec<&str> = service.iter().map(|(m, _)| m.as_str()).collect();
            for (method, types) in &service {
                assert_eq!(types.len(), 2, "{name}.proto: rpc {method}: {types:?}");
                for ty in types {
                    let first = ty.split('.').next().unwrap_or_default();
                    assert!(
                        ty.starts_with('.') || !methods.contains(&first),
                        "{name}.proto: rpc {method} names type `{ty}`, which stock protoc \
                         resolves to the method `{first}`; write it fully qualified"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(
        checked >= 6,
        "found only {checked} rpc types: is the parser still right?"
    );
}

#[test]
fn the_rule_catches_the_shadowed_form() {
    let bad = "service S {\n  rpc Call(Call) returns (Reply);\n}\n";
    let services = services(bad);
    assert_eq!(services.len(), 1);
    let (method, types) = &services[0][0];
    assert_eq!(method, "Call");
    assert_eq!(types, &["Call".to_string(), "Reply".to_string()]);
}
