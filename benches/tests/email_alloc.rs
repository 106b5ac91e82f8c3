//! Proves the allocation claims of `invite_core::EmailAddress::parse`: for a valid
//! ASCII address, none when its strings fit inline (32 bytes) and one otherwise;
//! none for a rejected one.
//!
//! This lives in the benches crate because counting needs a global
//! allocator: `allocation-counter` installs one (its own `unsafe` code, as
//! the workspace forbids ours), and it must not replace the allocator of
//! `invite-core`'s own test binaries.

use allocation_counter::measure;
use invite_core::{EmailAddress, EmailRules};

/// Heap allocations made by `parse_with(input, rules)`, the result kept alive.
fn allocations(
    input: &str,
    rules: &EmailRules,
) -> (u64, Result<EmailAddress, invite_core::InvalidEmail>) {
    let mut result = None;
    let info = measure(|| result = Some(EmailAddress::parse_with(input, rules)));
    (info.count_total, result.expect("measured closure ran"))
}

/// Bytes of the address's one buffer: the normal form, and the key and the original
/// where they differ from it.
fn buffer_len(address: &EmailAddress) -> usize {
    let normal = address.as_str();
    let extra = |s: &str| if s == normal { 0 } else { s.len() };
    normal.len() + extra(address.key()) + extra(address.original())
}

#[test]
fn valid_ascii_addresses_allocate_only_past_the_inline_buffer() {
    let inputs = [
        "ann@example.com",
        "Ann.Lee@example.com",       // key stored too
        "ann@EXAMPLE.com",           // original stored too
        "ANN+Tag@Sub.Example.CO.UK", // key and original: past 32 bytes
        "  ann@example.com \t",      // trimmed
        "a@b.co",
        "o'brien+x@mail.acme-corp.com",
        "firstname.lastname.department@example.com", // 41 bytes
        "user@xn--bcher-kva.de",                     // punycode is checked by IDNA: more
    ];
    for input in inputs {
        let (count, result) = allocations(input, &EmailRules::default());
        let address = result.unwrap_or_else(|e| panic!("{input:?}: {e}"));
        let expected = u64::from(buffer_len(&address) > 32);
        if input.contains("xn--") {
            // IDNA's own temporaries, whether or not the result fits inline.
            assert!(count >= 1, "{input:?}");
        } else {
            assert_eq!(count, expected, "{input:?} allocated {count} times");
        }
        // A clone allocates as often as the buffer is on the heap.
        assert_eq!(measure(|| drop(address.clone())).count_total, expected);
    }
    // Both forms are exercised.
    assert_eq!(allocations("ann@example.com", &EmailRules::default()).0, 0);
    assert_eq!(
        allocations("ANN+Tag@Sub.Example.CO.UK", &EmailRules::default()).0,
        1
    );
    // The slow path (a domain longer than 63 octets) allocates once.
    let long = format!("ann@{}.example.com", "a".repeat(60));
    assert_eq!(allocations(&long, &EmailRules::default()).0, 1);
    let single = allocations(
        "ann@mailhub",
        &EmailRules {
            allow_single_label_domain: true,
            ..EmailRules::default()
        },
    );
    // The precise path (a single-label domain) keeps a short address inline too.
    assert_eq!(single.0, 0);
}

#[test]
fn rejected_addresses_do_not_allocate() {
    let inputs = [
        "",
        "   ",
        "ann",
        "ann@",
        "@example.com",
        "a@b@c.com",
        "ann smith@example.com",
        "ann..lee@example.com",
        "ann@example..com",
        "ann@example.com.",
        "ann@-example.com",
        "ann@ex--ample.com",
        "ann@example",
        "ann@example.123",
        "ann@foo.localhost",
        "mailto:ann@example.com",
        "\"ann\"@example.com",
        "ann@[192.0.2.1]",
        &"a".repeat(300),
    ];
    for input in inputs {
        let (count, result) = allocations(input, &EmailRules::default());
        assert!(result.is_err(), "{input:?} parsed");
        assert_eq!(count, 0, "{input:?} allocated {count} times");
    }
}

#[test]
fn non_ascii_addresses_allocate_a_little() {
    // Not a contract, a tripwire: NFC, lowercasing and IDNA each may allocate.
    for input in [
        "josé@example.com",
        "José@example.com",
        "user@bücher.de",
        "用户@例子.广告",
    ] {
        let (count, result) = allocations(input, &EmailRules::default());
        assert!(result.is_ok(), "{input:?}");
        assert!(count <= 8, "{input:?} allocated {count} times");
    }
}
