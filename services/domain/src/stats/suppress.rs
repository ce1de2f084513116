//! Small-number suppression, shared by every published table: primary suppression of
//! counts below the threshold, medians over too few cases, and the complement that
//! keeps a withheld part from being worked out from its total.

/// One published number: its value, or withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// The number.
    Shown(u64),
    /// Too small to publish, or would let a suppressed number be worked out.
    Suppressed,
}

impl Cell {
    /// The value, if shown.
    pub fn value(self) -> Option<u64> {
        match self {
            Cell::Shown(v) => Some(v),
            Cell::Suppressed => None,
        }
    }
}

/// The median of `values` (the lower middle of an even count, in whole seconds).
fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        // Average of the two middle values, without overflow.
        values[mid - 1] + (values[mid] - values[mid - 1]) / 2
    })
}

pub(crate) fn primary(count: u64, threshold: u32) -> Cell {
    if count < u64::from(threshold) {
        Cell::Suppressed
    } else {
        Cell::Shown(count)
    }
}

pub(crate) fn median_cell(values: &mut [i64], threshold: u32) -> Cell {
    if values.len() < threshold as usize {
        return Cell::Suppressed;
    }
    median(values).map_or(Cell::Suppressed, |m| Cell::Shown(m.max(0) as u64))
}

/// Rule 3 for one column: `total` is the sum of `parts`.
pub(crate) fn complement(total: &mut Cell, mut parts: Vec<&mut Cell>) {
    if *total == Cell::Suppressed {
        return;
    }
    if parts.iter().filter(|c| ***c == Cell::Suppressed).count() != 1 {
        return;
    }
    let smallest = parts
        .iter_mut()
        .filter_map(|c| c.value().map(|v| (v, c)))
        .min_by_key(|(v, _)| *v);
    match smallest {
        Some((_, cell)) => **cell = Cell::Suppressed,
        // The one suppressed part would equal the total: withhold the total too.
        None => *total = Cell::Suppressed,
    }
}
