//! Ensembles: one image's tags from several variants (the members), combined into one list.
//! Pure.
//!
//! Each member gives its `(tag, score)` pairs for the image, or nothing when it failed on
//! it. Tags are compared exactly, so members should already be post-processed to one
//! spelling ([`crate::textpost`]); a tag a member lists twice counts once, at its highest
//! score. Methods, with the score each kept tag gets:
//!
//! - `union`: tags from any member that answered; the highest score.
//! - `intersection`: tags from every member that answered; the lowest score. An error when
//!   no member answered.
//! - `vote`: tags listed by at least `min_votes` members; the fraction of members voting.
//! - `weighted`: the weighted mean score over all members (a missing tag or a failed member
//!   counts 0); tags with a mean > 0 and ≥ `threshold` are kept.
//!
//! The result is ordered by score, highest first, then by tag.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How member outputs are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every tag any member gave (score: the highest).
    Union,
    /// Tags every answering member gave (score: the lowest).
    Intersection,
    /// Tags at least `min_votes` members gave (score: votes / members).
    Vote,
    /// Weighted mean of member scores, kept from `threshold` up.
    Weighted,
}

/// An ensemble's combination settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Combine {
    /// How member outputs are combined.
    pub method: Method,
    /// `vote`: how many members must give a tag (default: a majority, members / 2 + 1).
    /// Counted among all members configured, so a member that failed on an image counts as
    /// not voting.
    #[serde(default)]
    pub min_votes: Option<usize>,
    /// `weighted`: one non-negative weight per member, in member order (default: equal).
    #[serde(default)]
    pub weights: Vec<f64>,
    /// `weighted`: keep tags whose weighted score is ≥ this (default 0: every tag with a
    /// score above 0).
    #[serde(default)]
    pub threshold: Option<f64>,
}

impl Combine {
    /// Checks these settings against the number of members.
    ///
    /// Errors: no members; `min_votes` outside 1..=members; `weights` not one per member,
    /// negative, not finite or all zero; `threshold` negative or not finite; a setting given
    /// to a method that does not use it.
    pub fn validate(&self, n_members: usize) -> Result<(), String> {
        if n_members == 0 {
            return Err("an ensemble needs at least one member".into());
        }
        self.check_method_settings()?;
        if let Some(v) = self.min_votes {
            if v == 0 || v > n_members {
                return Err(format!(
                    "`min_votes` is {v}; it must be from 1 to the number of members ({n_members})"
                ));
            }
        }
        if !self.weights.is_empty() {
            check_weights(&self.weights, n_members)?;
        }
        match self.threshold {
            Some(t) if !(t.is_finite() && t >= 0.0) => {
                Err(format!("`threshold` is {t}; it must be a number ≥ 0"))
            }
            _ => Ok(()),
        }
    }

    /// Settings given to a method that would ignore them are mistakes.
    fn check_method_settings(&self) -> Result<(), String> {
        let misplaced = [
            ("min_votes", self.min_votes.is_some(), Method::Vote),
            ("weights", !self.weights.is_empty(), Method::Weighted),
            ("threshold", self.threshold.is_some(), Method::Weighted),
        ];
        for (name, given, user) in misplaced {
            if given && self.method != user {
                return Err(format!(
                    "`{name}` is only used by `method: {}`",
                    method_name(user)
                ));
            }
        }
        Ok(())
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::Union => "union",
        Method::Intersection => "intersection",
        Method::Vote => "vote",
        Method::Weighted => "weighted",
    }
}

fn check_weights(weights: &[f64], n_members: usize) -> Result<(), String> {
    if weights.len() != n_members {
        return Err(format!(
            "`weights` has {} entries but the ensemble has {n_members} members; give one weight per member",
            weights.len()
        ));
    }
    if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
        return Err(format!("weight {w} is not a number ≥ 0"));
    }
    if weights.iter().all(|w| *w == 0.0) {
        return Err("`weights` are all 0; at least one must be positive".into());
    }
    Ok(())
}

/// Combines one image's member outputs (`None`: the member failed on this image).
///
/// Errors: settings that fail [`Combine::validate`] for `members.len()` members, and
/// `intersection` when every member failed.
pub fn combine(
    c: &Combine,
    members: &[Option<Vec<(String, f32)>>],
) -> Result<Vec<(String, f32)>, String> {
    c.validate(members.len())?;
    let n = members.len();
    let answered: Vec<HashMap<&str, f32>> = members.iter().flatten().map(|m| best(m)).collect();
    let kept: Vec<(String, f32)> = match c.method {
        Method::Union => fold(&answered, f32::max),
        Method::Intersection => {
            if answered.is_empty() {
                return Err(format!("all {n} members failed on this image"));
            }
            fold(&answered, f32::min)
                .into_iter()
                .filter(|(t, _)| answered.iter().all(|m| m.contains_key(t.as_str())))
                .collect()
        }
        Method::Vote => vote(&answered, n, c.min_votes.unwrap_or(n / 2 + 1)),
        Method::Weighted => weighted(c, members),
    };
    Ok(sorted(kept))
}

/// One member's tags, each at its highest score.
fn best(tags: &[(String, f32)]) -> HashMap<&str, f32> {
    let mut out: HashMap<&str, f32> = HashMap::new();
    for (t, s) in tags {
        out.entry(t.as_str())
            .and_modify(|x| *x = x.max(*s))
            .or_insert(*s);
    }
    out
}

/// Every tag of any member, its scores folded with `f`.
fn fold(answered: &[HashMap<&str, f32>], f: fn(f32, f32) -> f32) -> Vec<(String, f32)> {
    let mut out: HashMap<&str, f32> = HashMap::new();
    for m in answered {
        for (t, s) in m {
            out.entry(t).and_modify(|x| *x = f(*x, *s)).or_insert(*s);
        }
    }
    out.into_iter().map(|(t, s)| (t.to_string(), s)).collect()
}

fn vote(answered: &[HashMap<&str, f32>], n: usize, min_votes: usize) -> Vec<(String, f32)> {
    let mut votes: HashMap<&str, usize> = HashMap::new();
    for t in answered.iter().flat_map(|m| m.keys()) {
        *votes.entry(t).or_default() += 1;
    }
    votes
        .into_iter()
        .filter(|(_, v)| *v >= min_votes)
        .map(|(t, v)| (t.to_string(), v as f32 / n as f32))
        .collect()
}

fn weighted(c: &Combine, members: &[Option<Vec<(String, f32)>>]) -> Vec<(String, f32)> {
    let weights: Vec<f64> = if c.weights.is_empty() {
        vec![1.0; members.len()]
    } else {
        c.weights.clone()
    };
    let total: f64 = weights.iter().sum();
    let mut sums: HashMap<&str, f64> = HashMap::new();
    for (m, w) in members.iter().zip(&weights) {
        for (t, s) in m.as_deref().map(best).unwrap_or_default() {
            *sums.entry(t).or_default() += w * f64::from(s);
        }
    }
    let threshold = c.threshold.unwrap_or(0.0);
    sums.into_iter()
        .map(|(t, sum)| (t, sum / total))
        .filter(|(_, s)| *s > 0.0 && *s >= threshold)
        .map(|(t, s)| (t.to_string(), s as f32))
        .collect()
}

/// Highest score first, then by tag.
fn sorted(mut tags: Vec<(String, f32)>) -> Vec<(String, f32)> {
    tags.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(list: &[(&str, f32)]) -> Option<Vec<(String, f32)>> {
        Some(list.iter().map(|(t, s)| (t.to_string(), *s)).collect())
    }

    fn tags(list: &[(&str, f32)]) -> Vec<(String, f32)> {
        member(list).unwrap()
    }

    fn method(m: Method) -> Combine {
        Combine {
            method: m,
            min_votes: None,
            weights: Vec::new(),
            threshold: None,
        }
    }

    /// Three members: `cat` from all, `dog` from two, `hat` from one.
    fn three() -> Vec<Option<Vec<(String, f32)>>> {
        vec![
            member(&[("cat", 0.9), ("dog", 0.4)]),
            member(&[("cat", 0.6), ("dog", 0.8), ("hat", 0.5)]),
            member(&[("cat", 0.7)]),
        ]
    }

    fn close(a: &[(String, f32)], b: &[(String, f32)]) {
        assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.0, y.0, "{a:?} vs {b:?}");
            assert!((x.1 - y.1).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn parses_yaml() {
        let c: Combine =
            serde_yaml::from_str("method: weighted\nweights: [2, 1]\nthreshold: 0.5").unwrap();
        assert_eq!(c.method, Method::Weighted);
        assert_eq!(c.weights, [2.0, 1.0]);
        assert!(serde_yaml::from_str::<Combine>("method: average").is_err());
        assert!(serde_yaml::from_str::<Combine>("method: vote\nvotes: 2").is_err());
    }

    #[test]
    fn union_takes_the_highest_score() {
        let out = combine(&method(Method::Union), &three()).unwrap();
        assert_eq!(out, tags(&[("cat", 0.9), ("dog", 0.8), ("hat", 0.5)]));
    }

    #[test]
    fn intersection_takes_the_lowest_score() {
        let out = combine(&method(Method::Intersection), &three()).unwrap();
        assert_eq!(out, tags(&[("cat", 0.6)]));
    }

    #[test]
    fn failed_members_are_left_out_of_union_and_intersection() {
        let mut members = three();
        members[2] = None;
        let out = combine(&method(Method::Intersection), &members).unwrap();
        assert_eq!(out, tags(&[("cat", 0.6), ("dog", 0.4)]));
        let out = combine(&method(Method::Union), &members).unwrap();
        assert_eq!(out, tags(&[("cat", 0.9), ("dog", 0.8), ("hat", 0.5)]));
    }

    #[test]
    fn all_members_failed() {
        let none = vec![None, None];
        assert!(combine(&method(Method::Union), &none).unwrap().is_empty());
        let err = combine(&method(Method::Intersection), &none).unwrap_err();
        assert_eq!(err, "all 2 members failed on this image");
        assert!(combine(&method(Method::Vote), &none).unwrap().is_empty());
        assert!(combine(&method(Method::Weighted), &none)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn empty_outputs() {
        let empty = vec![member(&[]), member(&[("cat", 1.0)])];
        assert!(combine(&method(Method::Intersection), &empty)
            .unwrap()
            .is_empty());
        assert_eq!(
            combine(&method(Method::Union), &empty).unwrap(),
            tags(&[("cat", 1.0)])
        );
        let all_empty = vec![member(&[]), member(&[])];
        for m in [
            Method::Union,
            Method::Intersection,
            Method::Vote,
            Method::Weighted,
        ] {
            assert!(combine(&method(m), &all_empty).unwrap().is_empty(), "{m:?}");
        }
    }

    #[test]
    fn vote_defaults_to_a_majority_of_all_members() {
        let out = combine(&method(Method::Vote), &three()).unwrap();
        close(&out, &tags(&[("cat", 1.0), ("dog", 2.0 / 3.0)]));
        // A failed member does not vote, and still counts in the majority and the fraction.
        let mut members = three();
        members[1] = None;
        let out = combine(&method(Method::Vote), &members).unwrap();
        close(&out, &tags(&[("cat", 2.0 / 3.0)]));
        // Four members: a majority is 3.
        let mut four = three();
        four.push(member(&[("dog", 0.1)]));
        let out = combine(&method(Method::Vote), &four).unwrap();
        close(&out, &tags(&[("cat", 0.75), ("dog", 0.75)]));
    }

    #[test]
    fn vote_with_min_votes() {
        let c = Combine {
            min_votes: Some(1),
            ..method(Method::Vote)
        };
        let out = combine(&c, &three()).unwrap();
        close(
            &out,
            &tags(&[("cat", 1.0), ("dog", 2.0 / 3.0), ("hat", 1.0 / 3.0)]),
        );
        let c = Combine {
            min_votes: Some(3),
            ..method(Method::Vote)
        };
        close(&combine(&c, &three()).unwrap(), &tags(&[("cat", 1.0)]));
    }

    #[test]
    fn a_member_repeating_a_tag_votes_once() {
        let members = vec![
            member(&[("cat", 0.2), ("cat", 0.9)]),
            member(&[]),
            member(&[]),
        ];
        assert!(combine(&method(Method::Vote), &members).unwrap().is_empty());
        let union = combine(&method(Method::Union), &members).unwrap();
        assert_eq!(union, tags(&[("cat", 0.9)]));
    }

    #[test]
    fn weighted_mean_over_all_members() {
        // Equal weights: cat (0.9+0.6+0.7)/3, dog (0.4+0.8)/3, hat 0.5/3.
        let out = combine(&method(Method::Weighted), &three()).unwrap();
        close(
            &out,
            &tags(&[("cat", 2.2 / 3.0), ("dog", 0.4), ("hat", 0.5 / 3.0)]),
        );
        let c = Combine {
            weights: vec![2.0, 1.0, 1.0],
            threshold: Some(0.4),
            ..method(Method::Weighted)
        };
        // cat (1.8+0.6+0.7)/4 = 0.775, dog (0.8+0.8)/4 = 0.4, hat 0.125.
        close(
            &combine(&c, &three()).unwrap(),
            &tags(&[("cat", 0.775), ("dog", 0.4)]),
        );
    }

    #[test]
    fn weighted_failed_member_counts_zero_and_zero_scores_are_dropped() {
        let members = vec![member(&[("cat", 0.8), ("dog", 0.0)]), None];
        let out = combine(&method(Method::Weighted), &members).unwrap();
        close(&out, &tags(&[("cat", 0.4)]));
        // A zero-weight member's tags score 0 and are not kept.
        let c = Combine {
            weights: vec![1.0, 0.0],
            ..method(Method::Weighted)
        };
        let members = vec![member(&[("cat", 0.5)]), member(&[("dog", 1.0)])];
        close(&combine(&c, &members).unwrap(), &tags(&[("cat", 0.5)]));
    }

    #[test]
    fn ties_are_ordered_by_tag() {
        let members = vec![member(&[("b", 0.5), ("a", 0.5), ("c", 0.7)])];
        let out = combine(&method(Method::Union), &members).unwrap();
        assert_eq!(out, tags(&[("c", 0.7), ("a", 0.5), ("b", 0.5)]));
    }

    #[test]
    fn validation() {
        let two = 2;
        assert!(method(Method::Union).validate(two).is_ok());
        assert!(method(Method::Union)
            .validate(0)
            .unwrap_err()
            .contains("at least one member"));
        let weights = |w: Vec<f64>| Combine {
            weights: w,
            ..method(Method::Weighted)
        };
        let err = weights(vec![1.0]).validate(two).unwrap_err();
        assert!(
            err.contains("1 entries") && err.contains("2 members"),
            "{err}"
        );
        assert!(weights(vec![1.0, -1.0]).validate(two).is_err());
        assert!(weights(vec![1.0, f64::NAN]).validate(two).is_err());
        assert!(weights(vec![0.0, 0.0])
            .validate(two)
            .unwrap_err()
            .contains("all 0"));
        assert!(weights(vec![0.0, 3.0]).validate(two).is_ok());
        let votes = |v: usize| Combine {
            min_votes: Some(v),
            ..method(Method::Vote)
        };
        assert!(votes(2).validate(two).is_ok());
        assert!(votes(3).validate(two).unwrap_err().contains("from 1 to"));
        assert!(votes(0).validate(two).is_err());
        let threshold = |t: f64| Combine {
            threshold: Some(t),
            ..method(Method::Weighted)
        };
        assert!(threshold(0.5).validate(two).is_ok());
        assert!(threshold(-0.1).validate(two).is_err());
        assert!(threshold(f64::INFINITY).validate(two).is_err());
        let misplaced = Combine {
            min_votes: Some(1),
            ..method(Method::Union)
        };
        assert_eq!(
            misplaced.validate(two).unwrap_err(),
            "`min_votes` is only used by `method: vote`"
        );
        let misplaced = Combine {
            threshold: Some(0.5),
            ..method(Method::Vote)
        };
        assert!(misplaced.validate(two).unwrap_err().contains("weighted"));
        // combine validates too.
        assert!(combine(&weights(vec![1.0]), &three()).is_err());
    }
}
