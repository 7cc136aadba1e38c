use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use proptest::prelude::*;

use super::*;

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[test]
fn is_no_bigger_than_a_string() {
    assert_eq!(
        std::mem::size_of::<SmallText>(),
        std::mem::size_of::<String>()
    );
}

#[test]
fn short_texts_are_inline_and_long_ones_shared() {
    assert!(SmallText::new("").is_inline());
    assert!(SmallText::new(&"x".repeat(INLINE)).is_inline());
    assert!(!SmallText::new(&"x".repeat(INLINE + 1)).is_inline());
    assert!(SmallText::from("x".repeat(INLINE)).is_inline());
    assert!(!SmallText::from("x".repeat(INLINE + 1)).is_inline());
    // Multi-byte characters count in bytes.
    let text = "é".repeat(INLINE / 2);
    assert_eq!(SmallText::new(&text).as_str(), text);
}

/// Any text, biased to lengths around the inline limit and to shared
/// prefixes (ids of one master share a long one).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{0,30}",
        "[a-cé-]{15,30}",
        "(m1-S|0123456789abcdef0123456789-S)[0-9]{1,4}",
    ]
}

proptest! {
    #[test]
    fn behaves_as_its_text(a in text(), b in text()) {
        let (x, y) = (SmallText::new(&a), SmallText::from(b.clone()));
        prop_assert_eq!(x.as_str(), a.as_str());
        prop_assert_eq!(y.as_str(), b.as_str());
        prop_assert_eq!(&*x.clone(), a.as_str());
        prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        prop_assert_eq!(x == y, a == b);
        prop_assert_eq!(hash_of(&x), hash_of(&a.as_str()));
        prop_assert_eq!(format!("{x}"), a.clone());
        prop_assert_eq!(format!("{x:?}"), format!("{a:?}"));
        prop_assert_eq!(x.is_inline(), a.len() <= INLINE);
    }
}
