//! The report as text, in `check`'s style: one block per finding, the
//! labelled lines through `table` so they line up.

use std::fmt;

use super::{Report, Severity};
use crate::table::{self, Layout};

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "amwall doctor: {} ({})",
            self.host.as_deref().unwrap_or("this host"),
            if self.roles.is_empty() {
                "no Amanda role found".to_string()
            } else {
                self.roles.join(", ")
            }
        )?;
        if let Some(e) = &self.error {
            writeln!(f, "Amanda said: {e}")?;
            if self.error_causes.is_empty() {
                writeln!(f, "  (no known cause prints this message)")?;
            }
        }
        if self.findings.is_empty() {
            writeln!(f, "\nNo finding: nothing read here explains a failure.")?;
        }
        for (i, x) in self.findings.iter().enumerate() {
            let sev = match x.severity {
                Severity::Breaks => "BREAKS",
                Severity::Warning => "WARNING",
                Severity::Note => "NOTE",
            };
            let mark = if x.explains_error {
                "  (explains the message)"
            } else {
                ""
            };
            writeln!(f, "\n{}. {sev} {}{mark}", i + 1, x.cause.name())?;
            writeln!(f, "   {}", x.summary)?;
            let mut rows: Vec<Vec<String>> = Vec::new();
            for (k, e) in x.evidence.iter().enumerate() {
                rows.push(vec![
                    if k == 0 { "at:" } else { "" }.to_string(),
                    format!("{}  {}", e.at, e.text),
                ]);
            }
            if let Some(a) = &x.amanda {
                rows.push(vec!["Amanda:".into(), a.clone()]);
            }
            rows.push(vec!["fix:".into(), x.fix.clone()]);
            f.write_str(&table::render(Layout { indent: 3, gap: 2 }, &rows))?;
        }
        if !self.not_checked.is_empty() {
            writeln!(f, "\nNot checked:")?;
            for n in &self.not_checked {
                writeln!(f, "  - {n}")?;
            }
        }
        if !self.error_causes.is_empty() {
            writeln!(
                f,
                "\nWhat prints this message (the causes likeliest first):"
            )?;
            for c in &self.error_causes {
                writeln!(f, "  - {c}")?;
            }
        }
        Ok(())
    }
}
