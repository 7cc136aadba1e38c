use proptest::prelude::*;

use super::*;

fn r(text: &str) -> Resources {
    Resources::parse(text).expect("valid resources text")
}

#[test]
fn parses_the_mesos_text_form() {
    let res =
        r("cpus:2;mem:1024.5;disk:20000;ports:[31000-31009,31010-32000];cpus(ops):1;zones:{a, b}");
    assert_eq!(res.scalar_value("cpus"), 3.0);
    assert_eq!(res.scalar_value("mem"), 1024.5);
    assert_eq!(
        res.to_string(),
        "cpus:2;cpus(ops):1;disk:20000;mem:1024.5;ports:[31000-32000];zones:{a,b}"
    );
    assert_eq!(res.allocatable_to("dev").scalar_value("cpus"), 2.0);
    assert_eq!(res.allocatable_to("ops").scalar_value("cpus"), 3.0);
}

#[test]
fn rejects_malformed_text_with_a_reason() {
    for bad in [
        "cpus",
        "cpus:abc",
        "cpus:-1",
        "cpus:NaN",
        "cpus:inf",
        "ports:[5-1]",
        "ports:[1-x]",
        "cpus(ops:1",
        "cpus(a b):1",
        ":1",
        "cpus:1;cpus:[1-2]",
        "cpus:1e13",
    ] {
        assert!(Resources::parse(bad).is_err(), "{bad} should be rejected");
    }
    let err = Resources::parse("cpus:abc").expect_err("not a number");
    assert!(err.to_string().contains("cpus"), "{err}");
}

#[test]
fn range_arithmetic_splits_and_merges() {
    let mut ports = r("ports:[31000-32000]");
    ports.subtract(&r("ports:[31005-31010]"));
    assert_eq!(ports.to_string(), "ports:[31000-31004,31011-32000]");
    assert!(ports.contains(&r("ports:[31000-31004]")));
    assert!(!ports.contains(&r("ports:[31004-31005]")));
    ports.add(&r("ports:[31005-31010]"));
    assert_eq!(ports.to_string(), "ports:[31000-32000]");
}

#[test]
fn reserved_resources_are_not_unreserved_ones() {
    let have = r("cpus(ops):2");
    assert!(!have.contains(&r("cpus:1")));
    assert!(have.contains(&r("cpus(ops):1")));
}

#[test]
fn proto_round_trip_keeps_roles() {
    let res = r("cpus:2;cpus(ops):1;ports:[1-5];zones:{a}");
    let back = Resources::from_proto(&res.to_proto(Some("dev"))).expect("round trip");
    assert_eq!(back, res);
}

fn arb_resources() -> impl Strategy<Value = Resources> {
    (
        0u32..10_000,
        0u32..100_000,
        proptest::collection::vec((0u64..2_000, 0u64..50), 0..5),
        prop::bool::ANY,
    )
        .prop_map(|(cpus, mem, ranges, reserved)| {
            let mut res = Resources::new();
            let role = if reserved { "ops" } else { UNRESERVED };
            res.add_entry_as(
                "cpus",
                role,
                Reservation::Static,
                Value::Scalar(i64::from(cpus)),
            )
            .expect("same type");
            res.add_entry_as(
                "mem",
                UNRESERVED,
                Reservation::Static,
                Value::Scalar(i64::from(mem)),
            )
            .expect("same type");
            let ranges = ranges.into_iter().map(|(b, len)| (b, b + len)).collect();
            res.add_entry_as(
                "ports",
                UNRESERVED,
                Reservation::Static,
                Value::Ranges(normalize_ranges(ranges)),
            )
            .expect("same type");
            res
        })
}

/// Scalars only, of a few names and roles, zero now and then.
fn arb_scalars() -> impl Strategy<Value = Resources> {
    proptest::collection::vec((0usize..4, 0usize..3, 0i64..3_000), 0..6).prop_map(|entries| {
        let mut res = Resources::new();
        for (name, role, millis) in entries {
            let name = ["cpus", "disk", "gpus", "mem"][name];
            let role = [UNRESERVED, "dev", "ops"][role];
            res.add_entry_as(name, role, Reservation::Static, Value::Scalar(millis))
                .expect("same type");
        }
        res
    })
}

proptest! {
    /// `summary_is` answers as comparing with a summary made would, for
    /// scalars (without making one) and for ranges (made).
    #[test]
    fn summary_is_compares_as_a_made_summary(
        a in prop_oneof![arb_scalars(), arb_resources()],
        b in prop_oneof![arb_scalars(), arb_resources()],
    ) {
        prop_assert!(a.summary_is(&a.summary()));
        prop_assert_eq!(a.summary_is(&b.summary()), a.summary() == b.summary());
        let mut more = a.clone();
        more.add(&b);
        prop_assert_eq!(a.summary_is(&more.summary()), a.summary() == more.summary());
        let mut fewer = a.summary();
        fewer.pop_last();
        prop_assert_eq!(a.summary_is(&fewer), a.summary() == fewer);
    }

    #[test]
    fn add_then_subtract_is_identity(a in arb_resources(), b in arb_resources()) {
        let mut sum = a.clone();
        sum.add(&b);
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
        // Ranges of a and b may overlap, so only the scalar part is exactly invertible.
        let mut back = sum.clone();
        back.subtract(&b);
        prop_assert_eq!(back.scalar_value("cpus"), a.scalar_value("cpus"));
        prop_assert_eq!(back.scalar_value("mem"), a.scalar_value("mem"));
    }

    #[test]
    fn subtract_of_contained_then_add_restores(a in arb_resources(), b in arb_resources()) {
        let mut whole = a.clone();
        whole.add(&b);
        let mut rest = whole.clone();
        rest.subtract(&b);
        rest.add(&b);
        prop_assert_eq!(rest, whole);
    }

    #[test]
    fn text_round_trip(a in arb_resources()) {
        let text = a.to_string();
        prop_assert_eq!(Resources::parse(&text).expect("own output parses"), a);
    }

    #[test]
    fn proto_round_trip(a in arb_resources()) {
        prop_assert_eq!(Resources::from_proto(&a.to_proto(None)).expect("own output decodes"), a);
    }

    #[test]
    fn subtract_never_goes_negative_nor_leaves_empty_entries(a in arb_resources(), b in arb_resources()) {
        let mut rest = a.clone();
        rest.subtract(&b);
        prop_assert!(rest.scalar_value("cpus") >= 0.0);
        prop_assert!(a.contains(&rest));
        prop_assert!(rest.entries.values().all(|v| !v.is_empty()));
    }

    #[test]
    fn ranges_stay_normalized(ranges in proptest::collection::vec((0u64..1000, 0u64..20), 0..20)) {
        let ranges: Vec<(u64, u64)> = ranges.into_iter().map(|(b, l)| (b, b + l)).collect();
        let n = normalize_ranges(ranges.clone());
        prop_assert!(n.windows(2).all(|w| w[0].1 + 1 < w[1].0));
        for (b, e) in ranges {
            prop_assert!(ranges_contain(&n, &[(b, e)]));
        }
    }
}

#[test]
fn sums_at_the_per_entry_maximum_stay_exact_and_past_it_are_refused() {
    // 10,000 entries of one name in one text: merged by `add_entry`.
    let max = crate::resources::MAX_SCALAR;
    let text = vec![format!("cpus:{max}"); 10_000].join(";");
    let sum = Resources::parse(&text).expect("each entry is in range");
    assert_eq!(sum.scalar_value("cpus"), max * 10_000.0);
    assert!(Resources::parse(&format!("cpus:{}", max * 10.0)).is_err());
}

#[test]
fn a_sum_past_one_entrys_maximum_prints_as_text_that_parses_back_to_it() {
    // Found by fuzzing: two entries of one name summed past 1e10 printed
    // as one entry that parsing refuses (the registry stores agents'
    // resources as text).
    let max = crate::resources::MAX_SCALAR;
    for text in [
        format!("cpus:{max};cpus:2"),
        format!("cpus:{max};cpus:{max}"),
        format!("x(ops):{max};x(ops):0.5;x(ops):{max};mem:1"),
    ] {
        let sum = Resources::parse(&text).expect("each entry is in range");
        let printed = sum.to_string();
        let again = Resources::parse(&printed).unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(sum, again, "{printed}");
        // And on the wire: pieces that convert back to the same sum.
        let back = Resources::from_proto(&sum.to_proto(None))
            .unwrap_or_else(|e| panic!("to_proto of {printed}: {e}"));
        assert_eq!(sum, back, "{printed}");
    }
    let sum = Resources::parse(&format!("cpus:{max};cpus:2")).expect("in range");
    assert_eq!(sum.to_string(), "cpus:10000000000;cpus:2");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// 10,000+ agents' totals far past the per-entry maximum (put in
    /// directly, as if validation were bypassed), summed as the master and
    /// UI sum them: they saturate, never overflow, and never go down.
    #[test]
    fn cluster_sums_never_overflow(agents in 9_000usize..12_000, below in 0u64..1_000, roles in 1usize..4) {
        let mut one = Resources::new();
        for r in 0..roles {
            let role = if r == 0 { UNRESERVED.to_string() } else { format!("r{r}") };
            let entry = Value::Scalar(1_000_000_000_000_000 - below as i64);
            one.add_entry_as("cpus", &role, Reservation::Static, entry.clone()).expect("scalar");
            one.add_entry_as("mem", &role, Reservation::Static, entry).expect("scalar");
        }
        let mut total = Resources::new();
        let mut last = 0.0;
        for _ in 0..agents {
            total.add(&one);
            let now = total.scalar_value("cpus");
            prop_assert!(now >= last);
            last = now;
        }
        prop_assert!(total.contains(&one));
        prop_assert!(total.scalar_value("mem") > 0.0);
        prop_assert!(!total.summary().is_empty());
        let mut rest = total.clone();
        rest.subtract(&one);
        prop_assert!(rest.scalar_value("cpus") >= 0.0);
    }
}

#[test]
fn amounts_that_would_become_nothing_ports_past_65535_and_typos_are_refused() {
    let why = |text: &str| Resources::parse_input(text).expect_err(text).to_string();
    assert!(
        why("cpus:0.0001").contains("below 0.001"),
        "{}",
        why("cpus:0.0001")
    );
    assert!(why("mem:0.0004").contains("below 0.001"));
    assert_eq!(
        r("cpus:0.0005").scalar_value("cpus"),
        0.001,
        "rounds up to the smallest amount"
    );
    assert!(r("cpus:0").is_empty(), "zero is allowed and is nothing");
    assert!(why("ports:[65000-65536]").contains("65535"));
    assert!(why("ports:[70000-70001]").contains("65535"));
    assert_eq!(r("ports:[1-65535]").to_string(), "ports:[1-65535]");
    assert_eq!(
        r("my_ranges:[1-70000]").to_string(),
        "my_ranges:[1-70000]",
        "only ports are ports"
    );
    for (typo, meant) in [
        ("cpu:4", "cpus"),
        ("memory:512", "mem"),
        ("port:[1-2]", "ports"),
    ] {
        let message = why(typo);
        assert!(
            message.contains(&format!("did you mean '{meant}'")),
            "{message}"
        );
    }
    assert_eq!(
        r("cpus:1;gpus_fast:2").scalar_value("gpus_fast"),
        2.0,
        "custom names stay allowed"
    );
    // The same rules for resources from the wire.
    let mut tiny = r("cpus:1").to_proto(None);
    tiny[0].scalar = Some(pb::value::Scalar { value: 1e-4 });
    assert!(Resources::from_proto(&tiny).is_err());
    let mut ports = r("ports:[1-2]").to_proto(None);
    ports[0].ranges = Some(pb::value::Ranges {
        range: vec![pb::value::Range {
            begin: 1,
            end: 70_000,
        }],
    });
    assert!(Resources::from_proto(&ports).is_err());
    assert_eq!(
        check_scalar(0.0001),
        Err("is above 0 but below 0.001, the smallest amount")
    );
    assert_eq!(check_scalar(0.5), Ok(()));
}

#[test]
fn dynamic_reservations_keep_their_kind_through_text_and_proto() {
    let res = r("cpus:1;cpus(ops):2;cpus(ops, dynamic):3");
    assert_eq!(res.to_string(), "cpus:1;cpus(ops):2;cpus(ops, dynamic):3");
    assert_eq!(Resources::parse(&res.to_string()).expect("round trip"), res);
    assert_eq!(
        Resources::from_proto(&res.to_proto(None)).expect("round trip"),
        res
    );
    let dynamic = pb::resource::reservation_info::Type::Dynamic as i32;
    let kinds: Vec<Option<i32>> = res
        .to_proto(None)
        .iter()
        .filter_map(|p| p.reservations.last().map(|r| r.r#type))
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == Some(dynamic)).count(), 1);
    assert!(
        !res.contains(&r("cpus(ops, dynamic):4")),
        "kinds do not mix"
    );
    assert_eq!(res.statically_reserved(), r("cpus(ops):2"));
    assert_eq!(res.unreserved(), r("cpus:6"));
    assert_eq!(res.as_dynamic(), r("cpus:1;cpus(ops, dynamic):5"));
    assert_eq!(res.allocatable_to("ops").scalar_value("cpus"), 6.0);
    assert!(
        Resources::parse("cpus(*, dynamic):1").is_err(),
        "unreserved is not a reservation"
    );
}

// A name has one type: well-known names everywhere, any name within one
// `Resources`; `add` keeps the type it has and leaves conflicting entries out.

#[test]
fn well_known_names_of_the_wrong_type_are_refused_in_text_and_proto() {
    for text in [
        "cpus:[1-2]",
        "mem:{a}",
        "disk:[0-1]",
        "gpus:{x}",
        "ports:4",
        "ports:{a}",
    ] {
        let err = Resources::parse(text).expect_err(text);
        assert!(
            matches!(err, ResourcesError::BadValue { .. }),
            "{text}: {err:?}"
        );
    }
    let wrong = pb::Resource {
        name: "ports".into(),
        r#type: Some(pb::value::Type::Scalar as i32),
        scalar: Some(pb::value::Scalar { value: 3.0 }),
        ..Default::default()
    };
    let err = Resources::from_proto(&[wrong]).expect_err("ports as a scalar");
    assert!(err.to_string().contains("ports are ranges"), "{err}");
    // Custom names may have any type.
    assert!(Resources::parse("zones:{a,b};licenses:3;slots:[1-4]").is_ok());
}

#[test]
fn a_name_given_two_types_is_refused_in_text_and_proto() {
    assert_eq!(
        Resources::parse("foo:1;foo(ops):[1-2]"),
        Err(ResourcesError::TypeMismatch("foo".into()))
    );
    let mut both = r("foo:1").to_proto(None);
    both.extend(r("foo:{a}").to_proto(None));
    assert_eq!(
        Resources::from_proto(&both),
        Err(ResourcesError::TypeMismatch("foo".into()))
    );
}

#[test]
fn add_keeps_a_names_type_and_try_add_refuses_a_conflict_unchanged() {
    let mut scalar = r("cpus:1;foo:2");
    let set = r("foo:{a};mem:5");
    assert_eq!(scalar.type_conflict(&set), Some("foo"));
    assert_eq!(scalar.kinds().get("foo"), Some(&Kind::Scalar));

    let before = scalar.clone();
    assert_eq!(
        scalar.try_add(&set),
        Err(ResourcesError::TypeMismatch("foo".into()))
    );
    assert_eq!(scalar, before, "a refused try_add changes nothing");

    // The documented rule: the conflicting entry is left out, the rest added.
    scalar.add(&set);
    assert_eq!(scalar, r("cpus:1;foo:2;mem:5"));

    let mut fine = r("cpus:1");
    fine.try_add(&r("cpus:2;mem:3")).expect("no conflict");
    assert_eq!(fine, r("cpus:3;mem:3"));
}

proptest! {
    #[test]
    fn resources_that_agree_on_types_add_the_same_with_add_and_try_add(
        a in arb_resources(),
        b in arb_resources(),
    ) {
        prop_assert_eq!(a.type_conflict(&b), None);
        let mut via_add = a.clone();
        via_add.add(&b);
        let mut via_try = a.clone();
        prop_assert!(via_try.try_add(&b).is_ok());
        prop_assert_eq!(via_add, via_try);
    }

    #[test]
    fn add_never_changes_a_names_type(a in arb_resources(), items in proptest::collection::btree_set("[a-c]", 1..3)) {
        // `other` gives `cpus`' name to a set through the unchecked constructor.
        let mut other = Resources::new();
        other.merge(("cpus".into(), UNRESERVED.into(), Reservation::Static), Value::Set(items));
        let mut sum = a.clone();
        sum.add(&other);
        prop_assert_eq!(sum, a);
    }
}

/// Found by the proptest above (one run in many: only when `a` came out
/// empty): `add` kept a name's type only against the names `self` already
/// had, so adding a set named `cpus` to empty resources made `cpus` a set.
#[test]
fn adding_a_well_known_name_with_another_type_to_empty_resources_leaves_it_out() {
    let mut other = Resources::new();
    other.merge(
        ("cpus".into(), UNRESERVED.into(), Reservation::Static),
        Value::Set(["a".to_string()].into_iter().collect()),
    );
    let mut sum = Resources::new();
    sum.add(&other);
    assert_eq!(sum, Resources::new());
}

/// Found by the `resources` fuzz target: a dynamic reservation for role
/// `o:ps`, taken from protobuf, printed as `cpus(o:ps, dynamic):512`, which
/// the text form reads as the name `cpus(o` — the registry would not have
/// read back what it wrote. Roles may not hold the text form's delimiters.
#[test]
fn a_role_with_the_text_forms_delimiters_is_refused_in_every_form() {
    for role in ["o:ps", "a;b"] {
        let mut proto = Resources::parse("cpus:512").expect("cpus").to_proto(None);
        proto[0].reservations = vec![pb::resource::ReservationInfo {
            r#type: Some(pb::resource::reservation_info::Type::Dynamic as i32),
            role: Some(role.to_string()),
            principal: Some("p".into()),
        }];
        assert!(
            Resources::from_proto(&proto).is_err(),
            "{role} from protobuf"
        );
        assert!(
            Resources::parse(&format!("cpus({role}):1")).is_err(),
            "{role} as text"
        );
    }
}

/// Found by the `resources` fuzz target: resources that came as protobuf
/// with a name people mistype (`cpu`) printed to text the text form refused,
/// so the registry (which stores an agent's resources as text) could not
/// read back what it wrote. The text form now takes any valid name; only
/// what a person types is checked for typos.
#[test]
fn any_resources_print_to_text_that_parses_back_and_only_input_is_checked_for_typos() {
    let proto = vec![
        Resources::parse("cpus:2").expect("cpus").to_proto(None)[0].clone(),
        pb::Resource {
            name: "cpu".into(),
            ..Resources::parse("cpus:512").expect("cpus").to_proto(None)[0].clone()
        },
    ];
    let resources = Resources::from_proto(&proto).expect("custom names are valid in protobuf");
    let printed = resources.to_string();
    assert_eq!(Resources::parse(&printed).expect(&printed), resources);
    let refused = Resources::parse_input(&printed).expect_err("a typo in input");
    assert!(
        refused.to_string().contains("did you mean 'cpus'"),
        "{refused}"
    );
}
