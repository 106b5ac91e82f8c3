//! [`Merged`]: the merged regions that lend their top-left value to the empty cells
//! below it in the columns an import reads, looked up row by row.
//!
//! A sheet may declare any number of merged regions, and a hostile one declares a
//! million copies of one tall region: looking at every region for every row made that
//! minutes of work. Regions are kept per read column in row order, none sharing a
//! read cell with another (Excel and LibreOffice never write overlapping regions; of
//! two that overlap, the one starting lower, or listed later, is left out), so each
//! row looks at one region per column, found by a cursor that only moves down.

use crate::validate::{CellValue, Merge};

/// One region, with its top-left value once its first row has been read.
#[derive(Debug)]
struct Region {
    merge: Merge,
    value: Option<CellValue<'static>>,
    used: bool,
}

/// The regions over the read columns (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Merged {
    regions: Vec<Region>,
    /// Per read column (the sink's picked order): its regions, top to bottom.
    by_column: [Vec<usize>; 6],
    /// Per read column: the first of its regions not ended above the last row read.
    cursor: [usize; 6],
    last_row: u32,
}

impl Merged {
    /// The regions of `merges` that can lend a value to a data row (they span at
    /// least two rows and reach `first_data`, 1-based) in one of `columns`.
    pub(crate) fn new(merges: &[Merge], first_data: u64, columns: &[Option<u32>; 6]) -> Self {
        let mut candidates: Vec<Merge> = merges
            .iter()
            .filter(|m| u64::from(m.last_row) + 1 >= first_data && m.last_row > m.first_row)
            .filter(|m| {
                columns
                    .iter()
                    .flatten()
                    .any(|c| (m.first_col..=m.last_col).contains(c))
            })
            .copied()
            .collect();
        // Stable: of two starting on one row, the one listed first is kept.
        candidates.sort_by_key(|m| m.first_row);
        let mut merged = Self::default();
        // Per read column, the lowest row its kept regions reach.
        let mut reach: [Option<u32>; 6] = [None; 6];
        for merge in candidates {
            let covers = |column: &Option<u32>| {
                column.is_some_and(|c| (merge.first_col..=merge.last_col).contains(&c))
            };
            let overlaps = columns.iter().zip(&reach).any(|(column, reach)| {
                covers(column) && reach.is_some_and(|r| merge.first_row <= r)
            });
            if overlaps {
                continue;
            }
            let index = merged.regions.len();
            for ((column, reach), list) in columns.iter().zip(&mut reach).zip(&mut merged.by_column)
            {
                if covers(column) {
                    *reach = Some(merge.last_row);
                    list.push(index);
                }
            }
            merged.regions.push(Region {
                merge,
                value: None,
                used: false,
            });
        }
        merged
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The values regions lend to the empty cells of 1-based `row` (by the order of
    /// `columns`), remembering each region's top-left value as it passes; a region
    /// that lends one for the first time is added to `used`.
    pub(crate) fn fills(
        &mut self,
        row: u64,
        columns: &[Option<u32>; 6],
        picked: &[&CellValue<'_>; 6],
        used: &mut Vec<Merge>,
    ) -> [Option<CellValue<'static>>; 6] {
        let zero_row = u32::try_from(row - 1).unwrap_or(u32::MAX);
        let regions = &self.regions;
        let ended = |k: &usize| regions[*k].merge.last_row < zero_row;
        for (list, cursor) in self.by_column.iter().zip(&mut self.cursor) {
            if zero_row < self.last_row {
                // A row out of order (a damaged sheet): search again.
                *cursor = list.partition_point(ended);
            } else {
                while list.get(*cursor).is_some_and(ended) {
                    *cursor += 1;
                }
            }
        }
        self.last_row = zero_row;
        let mut filled: [Option<CellValue<'static>>; 6] = Default::default();
        for i in 0..columns.len() {
            let (Some(column), Some(&k)) = (columns[i], self.by_column[i].get(self.cursor[i]))
            else {
                continue;
            };
            let region = &mut self.regions[k];
            if region.merge.first_row > zero_row {
                continue;
            }
            if zero_row == region.merge.first_row && column == region.merge.first_col {
                region.value = Some(picked[i].clone().into_owned());
            } else if let Some(value) = &region.value
                && matches!(picked[i], CellValue::Empty)
            {
                filled[i] = Some(value.clone());
                if !region.used {
                    region.used = true;
                    used.push(region.merge);
                }
            }
        }
        filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(first_row: u32, last_row: u32, first_col: u32, last_col: u32) -> Merge {
        Merge {
            first_row,
            last_row,
            first_col,
            last_col,
        }
    }

    const COLUMNS: [Option<u32>; 6] = [Some(0), Some(1), None, None, None, None];

    /// Fills for rows `1..=rows` whose cells are `value(row, column)`.
    fn run(merged: &mut Merged, rows: impl IntoIterator<Item = u64>) -> Vec<(u64, usize, String)> {
        let mut out = Vec::new();
        let mut used = Vec::new();
        for row in rows {
            let cells: [CellValue<'static>; 2] = [0, 1].map(|c| {
                if row % 3 == 1 {
                    CellValue::Text(format!("r{row}c{c}").into())
                } else {
                    CellValue::Empty
                }
            });
            let picked = [
                &cells[0],
                &cells[1],
                &CellValue::Empty,
                &CellValue::Empty,
                &CellValue::Empty,
                &CellValue::Empty,
            ];
            for (i, fill) in merged
                .fills(row, &COLUMNS, &picked, &mut used)
                .into_iter()
                .enumerate()
            {
                if let Some(CellValue::Text(text)) = fill {
                    out.push((row, i, text.into_owned()));
                }
            }
        }
        out
    }

    #[test]
    fn a_region_lends_its_top_left_value_down_its_rows() {
        // Rows 1–3 in column A, rows 4–6 over A and B (top-left A4).
        let merges = [merge(0, 2, 0, 0), merge(3, 5, 0, 1)];
        let mut merged = Merged::new(&merges, 1, &COLUMNS);
        assert_eq!(
            run(&mut merged, 1..=7),
            [
                (2, 0, "r1c0".into()),
                (3, 0, "r1c0".into()),
                (5, 0, "r4c0".into()),
                (5, 1, "r4c0".into()),
                (6, 0, "r4c0".into()),
                (6, 1, "r4c0".into()),
            ]
        );
    }

    #[test]
    fn copies_and_overlaps_are_left_out_and_rows_out_of_order_still_find_their_region() {
        let mut merges = vec![merge(0, 2, 0, 0); 1000];
        merges.push(merge(1, 5, 0, 0)); // overlaps the first
        merges.push(merge(3, 5, 0, 0));
        let mut merged = Merged::new(&merges, 1, &COLUMNS);
        assert_eq!(merged.regions.len(), 2);
        let forward = run(&mut merged, 1..=6);
        assert_eq!(
            forward,
            [
                (2, 0, "r1c0".into()),
                (3, 0, "r1c0".into()),
                (5, 0, "r4c0".into()),
                (6, 0, "r4c0".into())
            ]
        );
        // Back to row 3 after row 6: the first region again.
        assert_eq!(run(&mut merged, [3]), [(3, 0, "r1c0".into())]);
    }

    #[test]
    fn regions_outside_the_data_or_the_read_columns_or_one_row_high_are_ignored() {
        let merges = [merge(0, 0, 0, 5), merge(0, 9, 4, 4), merge(0, 1, 0, 0)];
        assert_eq!(Merged::new(&merges, 1, &COLUMNS).regions.len(), 1);
        assert!(Merged::new(&merges, 3, &COLUMNS).is_empty());
    }
}
