//! The Merkle tree of RFC 6962 / RFC 9162: roots, inclusion and consistency proofs, and
//! their verification.
//!
//! Proofs are generated from the definitions in RFC 9162 §2.1.3 (PATH, SUBPROOF) over any
//! [`SubtreeSource`], which only has to produce hashes of complete, aligned subtrees; the
//! log keeps those for large subtrees and recomputes small ones. Verification follows the
//! iterative algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2 and takes untrusted byte
//! slices, so a proof or root of the wrong length is an ordinary rejection.

use crate::hash::{Hash, node_hash};

/// Why a proof was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("the old size {old} is larger than the new size {new}")]
    SizesReversed { old: u64, new: u64 },
    #[error(
        "a consistency proof from the empty tree proves nothing; ask for one from size 1 or more"
    )]
    FromEmptyTree,
    #[error("the proof has {got} hashes; a tree of this shape needs {want}")]
    WrongLength { got: usize, want: usize },
    #[error("proof hash {position} is {len} bytes long; hashes are 32 bytes")]
    BadHashLength { position: usize, len: usize },
    #[error("the proof does not lead to the expected root ({which})")]
    RootMismatch { which: &'static str },
}

/// Hashes of complete subtrees: `complete(level, k)` is the root of leaves
/// `[k << level, (k + 1) << level)`. Only subtrees wholly inside the tree are asked for.
pub trait SubtreeSource {
    type Error;
    fn complete(&self, level: u32, k: u64) -> Result<Hash, Self::Error>;
}

/// The Merkle tree hash of leaves `[start, start + len)`, where `start` is a multiple of
/// the largest power of two not above `len` (true of every range PATH and SUBPROOF visit).
pub fn range_hash<S: SubtreeSource>(source: &S, start: u64, len: u64) -> Result<Hash, S::Error> {
    if len == 0 {
        return Ok(Hash::empty_root());
    }
    if len.is_power_of_two() {
        let level = len.trailing_zeros();
        return source.complete(level, start >> level);
    }
    let split = largest_power_of_two_below(len);
    let left = range_hash(source, start, split)?;
    let right = range_hash(source, start + split, len - split)?;
    Ok(node_hash(&left, &right))
}

/// The root of a tree of `size` leaves.
pub fn root<S: SubtreeSource>(source: &S, size: u64) -> Result<Hash, S::Error> {
    range_hash(source, 0, size)
}

/// The audit path for leaf `index` in a tree of `size` leaves (RFC 9162 PATH), leaf side first.
pub fn inclusion_proof<S: SubtreeSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if index >= size {
        return Ok(Err(ProofError::IndexOutOfRange { index, size }));
    }
    let mut proof = Vec::new();
    path(source, index, 0, size, &mut proof)?;
    Ok(Ok(proof))
}

fn path<S: SubtreeSource>(
    source: &S,
    m: u64,
    start: u64,
    n: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if n <= 1 {
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m < k {
        path(source, m, start, k, out)?;
        out.push(range_hash(source, start + k, n - k)?);
    } else {
        path(source, m - k, start + k, n - k, out)?;
        out.push(range_hash(source, start, k)?);
    }
    Ok(())
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new` leaves
/// (RFC 9162 PROOF / SUBPROOF).
pub fn consistency_proof<S: SubtreeSource>(
    source: &S,
    old: u64,
    new: u64,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if old > new {
        return Ok(Err(ProofError::SizesReversed { old, new }));
    }
    if old == 0 {
        return Ok(Err(ProofError::FromEmptyTree));
    }
    let mut proof = Vec::new();
    if old < new {
        subproof(source, old, 0, new, true, &mut proof)?;
    }
    Ok(Ok(proof))
}

fn subproof<S: SubtreeSource>(
    source: &S,
    m: u64,
    start: u64,
    n: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    if m == n {
        if !whole {
            out.push(range_hash(source, start, n)?);
        }
        return Ok(());
    }
    let k = largest_power_of_two_below(n);
    if m <= k {
        subproof(source, m, start, k, whole, out)?;
        out.push(range_hash(source, start + k, n - k)?);
    } else {
        subproof(source, m - k, start + k, n - k, false, out)?;
        out.push(range_hash(source, start, k)?);
    }
    Ok(())
}

/// Checks that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is `root`.
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let proof = hashes(proof)?;
    let leaf = Hash(
        leaf_hash
            .try_into()
            .map_err(|_| ProofError::RootMismatch { which: "leaf" })?,
    );
    let (inner, border) = decompose_inclusion(index, size);
    if proof.len() != inner + border {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want: inner + border,
        });
    }
    let computed = chain_border_right(chain_inner(leaf, &proof[..inner], index), &proof[inner..]);
    matches(&computed, root, "root")
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of
/// `new` leaves with root `new_root`.
pub fn verify_consistency<P: AsRef<[u8]>>(
    old: u64,
    new: u64,
    proof: &[P],
    old_root: &[u8],
    new_root: &[u8],
) -> Result<(), ProofError> {
    if new < old {
        return Err(ProofError::SizesReversed { old, new });
    }
    if old == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch { which: "new" })
        };
    }
    let proof = hashes(proof)?;
    if proof.is_empty() {
        return Err(ProofError::WrongLength { got: 0, want: 1 });
    }
    let (inner, border) = decompose_inclusion(old - 1, new);
    let shift = old.trailing_zeros() as usize;
    let inner = inner - shift;
    // The proof starts with the hash of the old tree's last complete subtree of size
    // 2^shift, unless the old tree is exactly that subtree: then its root stands in.
    let (seed, rest) = if old == 1 << shift {
        let seed = Hash(
            old_root
                .try_into()
                .map_err(|_| ProofError::RootMismatch { which: "old" })?,
        );
        (seed, &proof[..])
    } else {
        (proof[0], &proof[1..])
    };
    let want = inner + border + usize::from(old != 1 << shift);
    if proof.len() != want {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            want,
        });
    }
    let mask = (old - 1) >> shift;
    let old_computed = chain_border_right(
        chain_inner_right(seed, &rest[..inner], mask),
        &rest[inner..],
    );
    matches(&old_computed, old_root, "old")?;
    let new_computed = chain_border_right(chain_inner(seed, &rest[..inner], mask), &rest[inner..]);
    matches(&new_computed, new_root, "new")
}

fn hashes<P: AsRef<[u8]>>(proof: &[P]) -> Result<Vec<Hash>, ProofError> {
    proof
        .iter()
        .enumerate()
        .map(|(position, bytes)| {
            let bytes = bytes.as_ref();
            bytes
                .try_into()
                .map(Hash)
                .map_err(|_| ProofError::BadHashLength {
                    position,
                    len: bytes.len(),
                })
        })
        .collect()
}

fn matches(computed: &Hash, expected: &[u8], which: &'static str) -> Result<(), ProofError> {
    if computed.0.as_slice() == expected {
        Ok(())
    } else {
        Err(ProofError::RootMismatch { which })
    }
}

/// Splits an inclusion proof's length into the part below the point where the paths to
/// `index` and to the last leaf meet (`inner`) and the part along the right border.
fn decompose_inclusion(index: u64, size: u64) -> (usize, usize) {
    let inner = (u64::BITS - (index ^ (size - 1)).leading_zeros()) as usize;
    let border = (index >> inner).count_ones() as usize;
    (inner, border)
}

fn chain_inner(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        seed = if (index >> i) & 1 == 0 {
            node_hash(&seed, h)
        } else {
            node_hash(h, &seed)
        };
    }
    seed
}

fn chain_inner_right(mut seed: Hash, proof: &[Hash], index: u64) -> Hash {
    for (i, h) in proof.iter().enumerate() {
        if (index >> i) & 1 == 1 {
            seed = node_hash(h, &seed);
        }
    }
    seed
}

fn chain_border_right(mut seed: Hash, proof: &[Hash]) -> Hash {
    for h in proof {
        seed = node_hash(h, &seed);
    }
    seed
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// The root of `size` leaves kept as a stack of complete subtrees (the "compact range"):
/// appending is amortised O(1) and the root is O(log n), with no leaf kept.
#[derive(Clone, Debug, Default)]
pub struct CompactTree {
    size: u64,
    /// Roots of the complete subtrees that make up the tree, largest (leftmost) first.
    peaks: Vec<Hash>,
}

impl CompactTree {
    pub fn new() -> CompactTree {
        CompactTree::default()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        // Each trailing one bit of the old size is a peak of equal height to merge with.
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.peaks.pop().expect("a peak per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    pub fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return Hash::empty_root();
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// A [`SubtreeSource`] over leaf hashes held in memory: for tests, bundles and small trees.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    leaves: Vec<Hash>,
}

impl MemoryTree {
    pub fn new(leaves: Vec<Hash>) -> MemoryTree {
        MemoryTree { leaves }
    }

    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }
}

impl SubtreeSource for MemoryTree {
    type Error = std::convert::Infallible;

    fn complete(&self, level: u32, k: u64) -> Result<Hash, Self::Error> {
        let start = (k << level) as usize;
        Ok(reference_root(
            &self.leaves[start..start + (1usize << level)],
        ))
    }
}

/// The recursive definition of the Merkle tree hash, MTH(D[n]) in RFC 9162 §2.1.1, over
/// leaf hashes. The other implementations are tested against this one.
pub fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_of_two_below(n as u64) as usize;
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}
