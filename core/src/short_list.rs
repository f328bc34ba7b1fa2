//! A list of at most a few 4-byte values held inline in 24 bytes, on the heap beyond that.
//!
//! The record store keeps two of these per slot, so per (node, address) pair of a
//! cluster: a slot's resolved edges and the slots whose edges name it. An active view
//! holds at most five links, so nearly every list has five entries or fewer. A
//! `SmallVec<[u32; 6]>` of the same is 32 bytes (its length is a `usize` beside a union
//! of the six values and a heap pointer); here the length is a byte and five values fit
//! beside it, 24 bytes, 16 bytes less per pair for the two lists.
//!
//! Invariants: a list is `Spilled` exactly when it holds more than [`INLINE`] values
//! (a removal that brings it back to [`INLINE`] moves it inline again), and in `Inline`
//! only the first `len` values mean anything. Every operation keeps the order a `Vec`
//! would: `push` appends, `swap_remove` moves the last value into the hole, `retain`
//! keeps the order of what stays.

use std::ops::{Deref, DerefMut};

/// How many values a list holds without a heap block.
pub(crate) const INLINE: usize = 5;

/// A short list of `T` (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ShortList<T> {
    Inline {
        len: u8,
        items: [T; INLINE],
    },
    /// Boxed so that the list stays 24 bytes (a `Vec` beside the inline variant would make
    /// it 32); lists this long are rare.
    #[allow(clippy::box_collection)]
    Spilled(Box<Vec<T>>),
}

impl<T: Copy + Default> Default for ShortList<T> {
    fn default() -> Self {
        ShortList::Inline {
            len: 0,
            items: [T::default(); INLINE],
        }
    }
}

impl<T: Copy + Default> ShortList<T> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends `value`.
    pub(crate) fn push(&mut self, value: T) {
        match self {
            ShortList::Inline { len, items } if usize::from(*len) < INLINE => {
                items[usize::from(*len)] = value;
                *len += 1;
            }
            ShortList::Inline { items, .. } => {
                let mut spilled = Vec::with_capacity(2 * INLINE);
                spilled.extend_from_slice(items);
                spilled.push(value);
                *self = ShortList::Spilled(Box::new(spilled));
            }
            ShortList::Spilled(values) => values.push(value),
        }
    }

    /// Removes the value at `at`, moving the last one into its place; panics when `at` is
    /// out of range, as `Vec::swap_remove` does.
    pub(crate) fn swap_remove(&mut self, at: usize) -> T {
        let removed = match self {
            ShortList::Inline { len, items } => {
                let last = usize::from(*len)
                    .checked_sub(1)
                    .filter(|&last| at <= last)
                    .expect("swap_remove index out of range");
                let removed = items[at];
                items[at] = items[last];
                *len -= 1;
                removed
            }
            ShortList::Spilled(values) => values.swap_remove(at),
        };
        self.fit_inline();
        removed
    }

    /// Keeps the values for which `keep` holds, in their order.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        match self {
            ShortList::Inline { len, items } => {
                let mut kept = 0;
                for i in 0..usize::from(*len) {
                    if keep(&items[i]) {
                        items[kept] = items[i];
                        kept += 1;
                    }
                }
                *len = kept as u8;
            }
            ShortList::Spilled(values) => values.retain(|v| keep(v)),
        }
        self.fit_inline();
    }

    /// Moves a spilled list that fits back inline.
    fn fit_inline(&mut self) {
        if let ShortList::Spilled(values) = self {
            if values.len() <= INLINE {
                let mut items = [T::default(); INLINE];
                items[..values.len()].copy_from_slice(values);
                *self = ShortList::Inline {
                    len: values.len() as u8,
                    items,
                };
            }
        }
    }
}

impl<T> Deref for ShortList<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            ShortList::Inline { len, items } => &items[..usize::from(*len)],
            ShortList::Spilled(values) => values,
        }
    }
}

impl<T> DerefMut for ShortList<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            ShortList::Inline { len, items } => &mut items[..usize::from(*len)],
            ShortList::Spilled(values) => values,
        }
    }
}

impl<'a, T> IntoIterator for &'a ShortList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: Copy + Default> FromIterator<T> for ShortList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut list = ShortList::new();
        for value in iter {
            list.push(value);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_list_of_four_byte_values_is_24_bytes() {
        assert_eq!(std::mem::size_of::<ShortList<u32>>(), 24);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(u32),
        SwapRemove(usize),
        Retain(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u32..50).prop_map(Op::Push),
            1 => (0usize..12).prop_map(Op::SwapRemove),
            1 => (1u32..5).prop_map(Op::Retain),
        ]
    }

    proptest! {
        /// The list holds what a `Vec` given the same operations holds, in the same order,
        /// and is spilled exactly when that is more than fits inline.
        #[test]
        fn a_short_list_keeps_what_a_vec_keeps(ops in prop::collection::vec(op(), 0..60)) {
            let (mut list, mut vec) = (ShortList::<u32>::new(), Vec::new());
            for op in ops {
                match op {
                    Op::Push(v) => {
                        list.push(v);
                        vec.push(v);
                    }
                    Op::SwapRemove(at) if at < vec.len() => {
                        prop_assert_eq!(list.swap_remove(at), vec.swap_remove(at));
                    }
                    Op::SwapRemove(_) => {}
                    Op::Retain(m) => {
                        list.retain(|v| v % m != 0);
                        vec.retain(|v| v % m != 0);
                    }
                }
                prop_assert_eq!(&list[..], &vec[..]);
                prop_assert_eq!(matches!(list, ShortList::Spilled(_)), vec.len() > INLINE);
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn swap_remove_past_the_end_panics() {
        let mut list: ShortList<u32> = [1, 2].into_iter().collect();
        list.swap_remove(2);
    }
}
