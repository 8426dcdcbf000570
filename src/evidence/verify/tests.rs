//! The verifier on synthetic chains: each kind of tampering is named as exactly that.

use super::*;
use crate::evidence::chain::Head;

/// A chain of `n` rows whose content is `row-<i>`; returns entries with their true links.
fn chain(n: i64) -> Vec<(i64, ChainHash, String)> {
    let mut head = Head::genesis();
    (1..=n)
        .map(|i| {
            let content = format!("row-{i}");
            let (seq, hash) = head.append(|seq| bytes(seq, &content));
            (seq, hash, content)
        })
        .collect()
}

fn bytes(seq: i64, content: &str) -> Vec<u8> {
    let mut b = seq.to_be_bytes().to_vec();
    b.extend_from_slice(content.as_bytes());
    b
}

fn entries(rows: &[(i64, ChainHash, String)]) -> Vec<Entry> {
    rows.iter()
        .map(|(seq, hash, content)| {
            let c = content.clone();
            Entry {
                seq: Some(*seq),
                hash: Some(*hash),
                label: content.clone(),
                bytes_at: Box::new(move |s| bytes(s, &c)),
            }
        })
        .collect()
}

#[test]
fn an_untouched_chain_is_clean() {
    let r = verify(&entries(&chain(10)), &[], None);
    assert!(r.is_clean(), "{:?}", r.findings);
    assert_eq!(
        (r.chained_rows, r.last_seq, r.rows_after_checkpoint),
        (10, 10, 10)
    );
}

#[test]
fn a_changed_row_is_named() {
    let mut rows = chain(10);
    rows[4].2 = "row-5-changed".into();
    let r = verify(&entries(&rows), &[], None);
    assert_eq!(
        r.findings,
        vec![Finding::RowChanged {
            seq: 5,
            label: "row-5-changed".into()
        }]
    );
}

#[test]
fn deleted_rows_are_named() {
    let mut rows = chain(10);
    rows.remove(4);
    let r = verify(&entries(&rows), &[], None);
    assert_eq!(r.findings, vec![Finding::RowsDeleted { first: 5, last: 5 }]);
    let rows = chain(10)[3..].to_vec();
    let r = verify(&entries(&rows), &[], None);
    assert_eq!(r.findings, vec![Finding::RowsDeleted { first: 1, last: 3 }]);
}

#[test]
fn swapped_rows_are_named_as_reordered() {
    let mut rows = chain(10);
    rows[4].0 = 6;
    rows[5].0 = 5;
    let r = verify(&entries(&rows), &[], None);
    assert_eq!(
        r.findings,
        vec![
            Finding::RowMoved {
                seq: 5,
                belongs_at: 6,
                label: "row-6".into()
            },
            Finding::RowMoved {
                seq: 6,
                belongs_at: 5,
                label: "row-5".into()
            },
        ]
    );
}

#[test]
fn rows_without_chain_fields_are_counted() {
    let mut e = entries(&chain(3));
    e.push(Entry {
        seq: None,
        hash: None,
        label: "old".into(),
        bytes_at: Box::new(|_| Vec::new()),
    });
    let r = verify(&e, &[], None);
    assert!(r.is_clean());
    assert_eq!(r.unchained_rows, 1);
}
