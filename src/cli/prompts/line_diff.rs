//! A unified diff of two texts, line by line (longest common subsequence), colour-free; the
//! output `patch` and `git apply` read. Used by `iw-lab prompts diff`; sized for prompt
//! templates (the table is quadratic in the lines that differ after trimming the common
//! start and end).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Same,
    Del,
    Add,
}

/// One step of the edit script: `a` and `b` are the lines of each side consumed before it.
#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    a: usize,
    b: usize,
}

/// The unified diff of `old` → `new` with `context` lines around each change, headed
/// `--- old_label` / `+++ new_label`; empty when the texts are equal.
pub fn unified(old: &str, new: &str, old_label: &str, new_label: &str, context: usize) -> String {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = script(&a, &b);
    let mut out = String::new();
    for (lo, hi) in hunks(&ops, context) {
        if out.is_empty() {
            out.push_str(&format!("--- {old_label}\n+++ {new_label}\n"));
        }
        write_hunk(&mut out, &ops[lo..hi], &a, &b);
    }
    out
}

/// The edit script: common start, LCS of the middle, common end.
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let max_suf = a.len().min(b.len()) - pre;
    let suf = (0..max_suf)
        .take_while(|k| a[a.len() - 1 - k] == b[b.len() - 1 - k])
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    // lcs[i][j]: length of the longest common subsequence of am[i..] and bm[j..]
    let w = bm.len() + 1;
    let mut lcs = vec![0u32; (am.len() + 1) * w];
    for i in (0..am.len()).rev() {
        for j in (0..bm.len()).rev() {
            lcs[i * w + j] = if am[i] == bm[j] {
                lcs[(i + 1) * w + j + 1] + 1
            } else {
                lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
            };
        }
    }
    let mut ops: Vec<Op> = (0..pre).map(|k| op(Kind::Same, k, k)).collect();
    let (mut i, mut j) = (0, 0);
    while i < am.len() || j < bm.len() {
        let kind = if i < am.len() && j < bm.len() && am[i] == bm[j] {
            Kind::Same
        } else if j == bm.len() || (i < am.len() && lcs[(i + 1) * w + j] >= lcs[i * w + j + 1]) {
            Kind::Del
        } else {
            Kind::Add
        };
        ops.push(op(kind, pre + i, pre + j));
        i += usize::from(kind != Kind::Add);
        j += usize::from(kind != Kind::Del);
    }
    let (a0, b0) = (a.len() - suf, b.len() - suf);
    ops.extend((0..suf).map(|k| op(Kind::Same, a0 + k, b0 + k)));
    ops
}

fn op(kind: Kind, a: usize, b: usize) -> Op {
    Op { kind, a, b }
}

/// Ranges of `ops` to print: each change with `context` steps either side, close ones merged.
fn hunks(ops: &[Op], context: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (k, _) in ops.iter().enumerate().filter(|(_, o)| o.kind != Kind::Same) {
        let (lo, hi) = (k.saturating_sub(context), (k + 1 + context).min(ops.len()));
        match out.last_mut() {
            Some(last) if lo <= last.1 => last.1 = hi,
            _ => out.push((lo, hi)),
        }
    }
    out
}

fn write_hunk(out: &mut String, ops: &[Op], a: &[&str], b: &[&str]) {
    let count = |k: Kind| {
        ops.iter()
            .filter(|o| o.kind == Kind::Same || o.kind == k)
            .count()
    };
    let (na, nb) = (count(Kind::Del), count(Kind::Add));
    // an empty side names the line before it (0 at the start), as GNU diff does
    let start = |first: usize, n: usize| if n == 0 { first } else { first + 1 };
    out.push_str(&format!(
        "@@ -{},{na} +{},{nb} @@\n",
        start(ops[0].a, na),
        start(ops[0].b, nb)
    ));
    for o in ops {
        let (mark, line) = match o.kind {
            Kind::Same => (' ', a[o.a]),
            Kind::Del => ('-', a[o.a]),
            Kind::Add => ('+', b[o.b]),
        };
        out.push(mark);
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn equal_texts_give_nothing() {
        assert_eq!(unified("a\nb\n", "a\nb\n", "x", "y", 3), "");
        assert_eq!(unified("", "", "x", "y", 3), "");
    }

    #[test]
    fn one_changed_line_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n";
        assert_eq!(
            unified(old, new, "p@old", "p@new", 2),
            "--- p@old\n+++ p@new\n@@ -3,5 +3,5 @@\n 3\n 4\n-5\n+five\n 6\n 7\n"
        );
    }

    /// Lines 1..=20, with some replaced.
    fn numbered(replace: &[(usize, &str)]) -> String {
        (1..=20)
            .map(|i| match replace.iter().find(|(k, _)| *k == i) {
                Some((_, s)) => format!("{s}\n"),
                None => format!("{i}\n"),
            })
            .collect()
    }

    #[test]
    fn far_apart_changes_make_two_hunks_and_close_ones_merge() {
        let old = numbered(&[]);
        let new = numbered(&[(2, "two"), (19, "nineteen")]);
        let d = unified(&old, &new, "a", "b", 1);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
        assert!(d.contains("@@ -1,3 +1,3 @@\n 1\n-2\n+two\n 3\n"), "{d}");
        assert!(
            d.contains("@@ -18,3 +18,3 @@\n 18\n-19\n+nineteen\n 20\n"),
            "{d}"
        );
        let near = numbered(&[(4, "four")]);
        let d = unified(&near, &new, "a", "b", 1);
        assert!(d.contains("@@ -1,5 +1,5 @@"), "{d}");
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
    }

    #[test]
    fn insertions_deletions_and_empty_sides() {
        assert_eq!(
            unified("", "a\n", "x", "y", 3),
            "--- x\n+++ y\n@@ -0,0 +1,1 @@\n+a\n"
        );
        assert_eq!(
            unified("a\nb\nc\n", "a\nc\n", "x", "y", 0),
            "--- x\n+++ y\n@@ -2,1 +1,0 @@\n-b\n"
        );
        assert_eq!(
            unified("a\nc\n", "a\nb\nc\n", "x", "y", 0),
            "--- x\n+++ y\n@@ -1,0 +2,1 @@\n+b\n"
        );
    }

    #[test]
    fn missing_final_newline_is_marked() {
        assert_eq!(
            unified("a\nb", "a\nb\n", "x", "y", 1),
            "--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"
        );
    }

    #[test]
    fn lcs_keeps_the_common_lines() {
        let d = unified("a\nb\nc\nd\n", "b\nx\nd\ny\n", "x", "y", 0);
        let body: Vec<&str> = d.lines().skip(2).filter(|l| !l.starts_with("@@")).collect();
        assert_eq!(body, ["-a", "-c", "+x", "+y"]);
    }
}
