//! Receipts signed a tree at a time: the receipts of one agency in one committed batch
//! are the leaves of an RFC 9162 Merkle tree, the exchange signs the tree's head once,
//! and each receipt carries the head, the signature and its inclusion proof, so it is
//! still verified on its own with only the public key.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{InclusionProof, RootHash};
use handoff_contract::v1::Receipt;
use prost::Message;
use sha2_ct::Sha256;

use crate::key::{AuditError, ExchangeKey, signature, verifying_key};

/// Receipts in one tree (and so in one receipts message) at most, so that a message of
/// receipts stays far below the broker's payload limit whatever the batch size.
pub const RECEIPTS_PER_TREE: usize = 256;

/// What the tree's leaf is: the receipt encoded without the fields of its tree
/// (`signature`, `tree_size`, `tree_root`, `leaf_index`, `inclusion_path`).
pub fn leaf(receipt: &Receipt) -> Vec<u8> {
    if receipt.signature.is_empty()
        && receipt.tree_size == 0
        && receipt.tree_root.is_empty()
        && receipt.leaf_index == 0
        && receipt.inclusion_path.is_empty()
    {
        return receipt.encode_to_vec();
    }
    Receipt {
        signature: Vec::new(),
        tree_size: 0,
        tree_root: Vec::new(),
        leaf_index: 0,
        inclusion_path: Vec::new(),
        ..receipt.clone()
    }
    .encode_to_vec()
}

/// The bytes a tree head's signature covers.
pub fn tree_head_message(tree_size: u64, root: &[u8]) -> Vec<u8> {
    let mut m = b"handoff-receipts-v1".to_vec();
    m.extend_from_slice(&tree_size.to_be_bytes());
    m.extend_from_slice(root);
    m
}

impl ExchangeKey {
    /// Signs receipts as one tree (at most [`RECEIPTS_PER_TREE`] of them): fills in each
    /// one's tree head, place, inclusion proof and the head's one signature.
    pub fn sign_receipts(&self, receipts: &mut [Receipt]) {
        debug_assert!(receipts.len() <= RECEIPTS_PER_TREE);
        if receipts.is_empty() {
            return;
        }
        let mut tree = MemoryBackedTree::<Sha256, Vec<u8>>::new();
        for receipt in receipts.iter() {
            tree.push(leaf(receipt));
        }
        let root = tree.root();
        let size = root.num_leaves();
        let root = root.as_bytes().to_vec();
        let signature = self.sign(&tree_head_message(size, &root));
        for (index, receipt) in receipts.iter_mut().enumerate() {
            receipt.inclusion_path = tree
                .prove_inclusion(index)
                .as_bytes()
                .chunks(32)
                .map(<[u8]>::to_vec)
                .collect();
            receipt.tree_size = size;
            receipt.tree_root = root.clone();
            receipt.leaf_index = index as u64;
            receipt.signature = signature.clone();
        }
    }

    /// Signs one receipt on its own (a tree of one), as a look-up answers it.
    pub fn sign_receipt(&self, receipt: &mut Receipt) {
        self.sign_receipts(std::slice::from_mut(receipt));
    }
}

/// Checks a receipt against the exchange's public key: the signature over its tree's
/// head, then that the receipt, as it reads, is the leaf at its place in that tree.
pub fn verify_receipt(receipt: &Receipt, public_key: &[u8]) -> Result<(), AuditError> {
    let bad =
        |what: &str| AuditError::BadSignature(format!("receipt for {}: {what}", receipt.event_id));
    verifying_key(public_key)?
        .verify_strict(
            &tree_head_message(receipt.tree_size, &receipt.tree_root),
            &signature(&receipt.signature)?,
        )
        .map_err(|e| bad(&e.to_string()))?;
    let root = <[u8; 32]>::try_from(receipt.tree_root.as_slice())
        .map_err(|_| bad("its tree root is not 32 bytes"))?;
    if receipt.inclusion_path.iter().any(|h| h.len() != 32) {
        return Err(bad("its inclusion proof holds a hash that is not 32 bytes"));
    }
    let proof = InclusionProof::<Sha256>::from_bytes(receipt.inclusion_path.concat());
    RootHash::<Sha256>::new(root.into(), receipt.tree_size)
        .verify_inclusion(&leaf(receipt), receipt.leaf_index, &proof)
        .map_err(|e| bad(&format!("not in the signed tree ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2_ct::Digest;

    fn receipts(n: usize) -> Vec<Receipt> {
        (0..n)
            .map(|i| Receipt {
                event_id: format!("e{i}"),
                sequence: i as u64 + 1,
                stream_sequence: i as u64 + 10,
                ..Receipt::default()
            })
            .collect()
    }

    #[test]
    fn every_receipt_of_a_tree_verifies_on_its_own_and_only_unaltered() {
        let (_dir, key) = crate::key::tests::fresh_key();
        for n in [1, 2, 3, 5, 8, 13, RECEIPTS_PER_TREE] {
            let mut batch = receipts(n);
            key.sign_receipts(&mut batch);
            let signatures: std::collections::HashSet<_> =
                batch.iter().map(|r| r.signature.clone()).collect();
            assert_eq!(signatures.len(), 1, "one signature for the tree of {n}");
            for r in &batch {
                verify_receipt(r, &key.public_key()).expect("verifies");
                let mut altered = r.clone();
                altered.sequence += 1;
                assert!(verify_receipt(&altered, &key.public_key()).is_err());
                let mut moved = r.clone();
                moved.leaf_index = (r.leaf_index + 1) % r.tree_size.max(2);
                if n > 1 {
                    assert!(verify_receipt(&moved, &key.public_key()).is_err(), "moved");
                }
                let mut resized = r.clone();
                resized.tree_size += 1;
                assert!(
                    verify_receipt(&resized, &key.public_key()).is_err(),
                    "resized"
                );
            }
        }
    }

    #[test]
    fn a_receipt_cannot_be_carried_into_another_tree_or_verified_with_another_key() {
        let (_dir, key) = crate::key::tests::fresh_key();
        let (_other_dir, other) = crate::key::tests::fresh_key();
        let mut first = receipts(4);
        let mut second = receipts(4);
        second[0].event_id = "forged".into();
        key.sign_receipts(&mut first);
        key.sign_receipts(&mut second);
        // The forged receipt with the first tree's proof and signature.
        let mut spliced = second[0].clone();
        spliced.tree_root = first[0].tree_root.clone();
        spliced.signature = first[0].signature.clone();
        spliced.inclusion_path = first[0].inclusion_path.clone();
        assert!(verify_receipt(&spliced, &key.public_key()).is_err());
        assert!(verify_receipt(&first[0], &other.public_key()).is_err());
        let mut truncated = first[1].clone();
        truncated.inclusion_path.pop();
        assert!(verify_receipt(&truncated, &key.public_key()).is_err());
    }

    #[test]
    fn the_tree_is_rfc_9162s() {
        // Three leaves: the root is H(1 || H(1 || h0 || h1) || h2), h = H(0 || leaf).
        let (_dir, key) = crate::key::tests::fresh_key();
        let mut batch = receipts(3);
        let leaves: Vec<Vec<u8>> = batch.iter().map(leaf).collect();
        key.sign_receipts(&mut batch);
        let h = |parts: &[&[u8]]| {
            let mut d = Sha256::new();
            for p in parts {
                d.update(p);
            }
            d.finalize().to_vec()
        };
        let l: Vec<Vec<u8>> = leaves.iter().map(|b| h(&[&[0], b])).collect();
        let left = h(&[&[1], &l[0], &l[1]]);
        assert_eq!(batch[0].tree_root, h(&[&[1], &left, &l[2]]));
        assert_eq!(batch[2].inclusion_path, vec![left]);
        assert_eq!(batch[0].inclusion_path, vec![l[1].clone(), l[2].clone()]);
    }
}
