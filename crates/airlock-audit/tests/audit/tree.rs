//! The tree against its recursive definition, and proofs for random shapes.

use airlock_audit::merkle::{
    CompactTree, MemoryTree, consistency_proof, inclusion_proof, reference_root, root,
    verify_consistency, verify_inclusion,
};
use airlock_audit::{Hash, leaf_hash};
use proptest::prelude::*;

fn leaves(n: usize) -> Vec<Hash> {
    (0..n)
        .map(|i| leaf_hash(format!("entry {i}").as_bytes()))
        .collect()
}

#[test]
fn roots_of_the_published_tree_match() {
    // The leaf inputs and roots listed in shared/vectors/rfc6962/README.md.
    let inputs = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    let hashes: Vec<Hash> = inputs
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect();
    let mut compact = CompactTree::new();
    for (size, want) in roots.iter().enumerate() {
        assert_eq!(
            reference_root(&hashes[..size]).to_hex(),
            *want,
            "reference, size {size}"
        );
        assert_eq!(compact.root().to_hex(), *want, "compact, size {size}");
        let tree = MemoryTree::new(hashes[..size].to_vec());
        assert_eq!(
            root(&tree, size as u64).unwrap().to_hex(),
            *want,
            "by subtrees, size {size}"
        );
        if size < hashes.len() {
            compact.push(hashes[size]);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn the_incremental_tree_equals_the_recursive_definition(n in 0usize..600) {
        let hashes = leaves(n);
        let mut compact = CompactTree::new();
        for h in &hashes {
            compact.push(*h);
        }
        prop_assert_eq!(compact.size(), n as u64);
        prop_assert_eq!(compact.root(), reference_root(&hashes));
        prop_assert_eq!(root(&MemoryTree::new(hashes.clone()), n as u64).unwrap(), reference_root(&hashes));
    }

    #[test]
    fn inclusion_proofs_verify_for_random_indices_and_sizes(size in 1u64..700, pick in any::<u64>()) {
        let hashes = leaves(size as usize);
        let tree = MemoryTree::new(hashes.clone());
        let index = pick % size;
        let proof = inclusion_proof(&tree, index, size).unwrap().unwrap();
        let want = if size == 1 { 0 } else { (64 - (size - 1).leading_zeros()) as usize };
        prop_assert!(proof.len() <= want, "proof of {} hashes for size {}", proof.len(), size);
        let root = reference_root(&hashes);
        let proof: Vec<[u8; 32]> = proof.iter().map(|h| h.0).collect();
        prop_assert!(verify_inclusion(index, size, &hashes[index as usize].0, &proof, &root.0).is_ok());
        // The same proof must not pass for a neighbour, another leaf or another root.
        let other = (index + 1) % size;
        if other != index {
            prop_assert!(verify_inclusion(other, size, &hashes[index as usize].0, &proof, &root.0).is_err());
        }
        prop_assert!(verify_inclusion(index, size, &leaf_hash(b"forged").0, &proof, &root.0).is_err());
        prop_assert!(verify_inclusion(index, size, &hashes[index as usize].0, &proof, &leaf_hash(b"x").0).is_err());
    }

    #[test]
    fn consistency_proofs_verify_for_random_sizes(new in 1u64..700, pick in any::<u64>()) {
        let hashes = leaves(new as usize);
        let tree = MemoryTree::new(hashes.clone());
        let old = 1 + pick % new;
        let proof = consistency_proof(&tree, old, new).unwrap().unwrap();
        let old_root = reference_root(&hashes[..old as usize]);
        let new_root = reference_root(&hashes);
        let proof: Vec<[u8; 32]> = proof.iter().map(|h| h.0).collect();
        prop_assert!(verify_consistency(old, new, &proof, &old_root.0, &new_root.0).is_ok());
        if old < new {
            // A rewritten old entry breaks consistency.
            let mut forged = hashes.clone();
            forged[(pick % old) as usize] = leaf_hash(b"rewritten");
            let forged_root = reference_root(&forged[..old as usize]);
            prop_assert!(verify_consistency(old, new, &proof, &forged_root.0, &new_root.0).is_err());
        }
    }
}
