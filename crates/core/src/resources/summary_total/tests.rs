use std::collections::BTreeMap;

use proptest::prelude::*;

use super::SummaryTotal;
use crate::resources::{Resources, SummaryValue};

/// A task's resources in text: thousandths of cpus and mem, some ports,
/// some zones (each part left out when empty).
fn arb_text() -> impl Strategy<Value = String> {
    (
        0u32..4_000,
        0u32..100_000,
        proptest::collection::vec((0u64..200, 0u64..5), 0..3),
        proptest::collection::btree_set(prop::sample::select(vec!["a", "b", "c"]), 0..3),
    )
        .prop_map(|(cpus, mem, ports, zones)| {
            let mut parts = vec![
                format!("cpus:{}.{:03}", cpus / 1000, cpus % 1000),
                format!("mem:{}.{:03}", mem / 1000, mem % 1000),
            ];
            if !ports.is_empty() {
                let ranges: Vec<String> = ports
                    .iter()
                    .map(|(b, len)| format!("{}-{}", 31_000 + b, 31_000 + b + len))
                    .collect();
                parts.push(format!("ports:[{}]", ranges.join(",")));
            }
            if !zones.is_empty() {
                let zones: Vec<&str> = zones.into_iter().collect();
                parts.push(format!("zones:{{{}}}", zones.join(",")));
            }
            parts.join(";")
        })
}

fn one_pass(summaries: &[BTreeMap<String, SummaryValue>]) -> SummaryTotal {
    let mut total = SummaryTotal::new();
    for summary in summaries {
        total.add_summary(summary);
    }
    total
}

proptest! {
    /// The total is the summary of the resources added up as `Resources`
    /// adds them: exact, not a float sum.
    #[test]
    fn the_total_is_the_summary_of_the_sum(texts in proptest::collection::vec(arb_text(), 0..40)) {
        let resources: Vec<Resources> = texts
            .iter()
            .map(|t| Resources::parse(t).expect("valid resources"))
            .collect();
        let summaries: Vec<_> = resources.iter().map(Resources::summary).collect();
        let mut sum = Resources::new();
        for r in &resources {
            sum.add(r);
        }
        prop_assert_eq!(one_pass(&summaries).to_summary(), sum.summary());
    }

    /// Partial totals (of consecutive groups, cut anywhere) add up to what
    /// one pass gives.
    #[test]
    fn any_grouping_gives_the_same_total(
        texts in proptest::collection::vec(arb_text(), 0..40),
        cuts in proptest::collection::vec(0usize..40, 0..6),
    ) {
        let summaries: Vec<_> = texts
            .iter()
            .map(|t| Resources::parse(t).expect("valid resources").summary())
            .collect();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(summaries.len())).collect();
        cuts.push(0);
        cuts.push(summaries.len());
        cuts.sort_unstable();
        let mut grouped = SummaryTotal::new();
        for pair in cuts.windows(2) {
            grouped.add(&one_pass(&summaries[pair[0]..pair[1]]));
        }
        prop_assert_eq!(&grouped, &one_pass(&summaries));
        prop_assert_eq!(grouped.to_summary(), one_pass(&summaries).to_summary());
    }
}

#[test]
fn tenths_add_up_exactly_and_a_name_keeps_its_first_kind() {
    let tenth = BTreeMap::from([("cpus".to_owned(), SummaryValue::Number(0.1))]);
    let mut total = SummaryTotal::new();
    for _ in 0..3 {
        total.add_summary(&tenth);
    }
    // Three floats of 0.1 add up to 0.30000000000000004.
    assert_eq!(total.to_summary()["cpus"], SummaryValue::Number(0.3));

    let text = BTreeMap::from([("cpus".to_owned(), SummaryValue::Text("[1-2]".to_owned()))]);
    total.add_summary(&text);
    assert_eq!(total.to_summary()["cpus"], SummaryValue::Number(0.3));
    let mut texts_first = SummaryTotal::new();
    texts_first.add_summary(&text);
    texts_first.add(&total);
    assert_eq!(
        texts_first.to_summary()["cpus"],
        SummaryValue::Text("[1-2]".to_owned())
    );
}
