//! Plain-text tables for the terminal reports (`check`, `lab`).
//!
//! One formatter so the reports line up the same way: columns as wide as
//! their widest cell counted in characters (the arrows are multi-byte), the
//! last column never padded, and no trailing blanks, so a report diffs
//! cleanly and pastes into an issue unchanged. Markdown tables (SUMMARY.md)
//! are not padded at all and do not come here.

/// Left margin and column gap of a table.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub indent: usize,
    pub gap: usize,
}

/// `rows` (the header first, if any) as lines, each ending in a newline.
/// Rows may differ in length; a short row simply ends early.
pub fn render<S: AsRef<str>>(layout: Layout, rows: &[Vec<S>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0usize; cols];
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            width[c] = width[c].max(cell.as_ref().chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = " ".repeat(layout.indent);
        for (c, cell) in r.iter().enumerate() {
            let cell = cell.as_ref();
            line.push_str(cell);
            if c + 1 < r.len() {
                let pad = width[c] - cell.chars().count() + layout.gap;
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_characters_and_the_last_is_not_padded() {
        let rows = vec![
            vec!["#", "who", "result"],
            vec!["1", "a → b", "PASS"],
            vec!["10", "tshost → fwhost", "BLOCKED on x"],
        ];
        let t = render(Layout { indent: 2, gap: 2 }, &rows);
        assert_eq!(
            t,
            "  #   who              result\n\
             \x20 1   a → b            PASS\n\
             \x20 10  tshost → fwhost  BLOCKED on x\n"
        );
    }

    #[test]
    fn empty_trailing_cells_leave_no_blanks() {
        let rows = vec![vec!["a", "b", ""], vec!["ccc", "", ""]];
        let t = render(Layout { indent: 1, gap: 1 }, &rows);
        assert_eq!(t, " a   b\n ccc\n");
    }

    #[test]
    fn no_rows_no_lines() {
        assert_eq!(render::<&str>(Layout { indent: 2, gap: 2 }, &[]), "");
    }
}
