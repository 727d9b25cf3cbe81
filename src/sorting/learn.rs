//! Learning where a user files images: "which library folder does this image go in?"
//!
//! Every image already filed in the library is a training example. Its label is its folder
//! (a relative path such as `Travel/2019`), and it is described by a set of string tokens
//! (`tag:1girl`, `person:amy h`, `gen:comfyui`, `model:sdxl_base`, …) and, optionally, an
//! embedding (for example CLIP).
//!
//! Two simple, well-understood models vote:
//!
//! * **Bernoulli naive Bayes** over the tokens. Each token is either present or absent in an
//!   image. For each folder we estimate, from the weighted training examples, how likely each
//!   token is, with Laplace smoothing (`alpha` pseudo-counts for "present" and for "absent"),
//!   and the folder's prior from its total weight. The log-probability of an image sums
//!   `log p` over its tokens and `log (1 - p)` over every other token of the vocabulary. The
//!   second sum is computed once per folder at training time (over the whole vocabulary) and
//!   corrected only for the image's own tokens, so scoring an image costs
//!   O(its tokens × folders), however large the vocabulary. Tokens never seen in training are
//!   ignored. Scores become probabilities with a numerically safe softmax (log-sum-exp).
//! * **k nearest neighbours** on the embeddings, when both the training examples and the
//!   query have one: the `k` most cosine-similar training images each vote for their folder
//!   with `max(0, cosine) × weight`, and the votes are normalised. Embeddings are normalised
//!   to unit length here, so the cosine is a dot product even if a caller's vectors drift.
//!
//! The two are mixed as `(1 - w) · p_bayes + w · p_knn`; with no usable neighbour votes the
//! naive Bayes probabilities are used alone. [`Explained::reasons`] names the query's tokens
//! that most favour the top folder over the runner-up (their naive Bayes log-likelihood
//! ratio), so a suggestion can be explained in words.
//!
//! Robustness: an example with a weight that is not a positive finite number is ignored; an
//! embedding with a non-finite or all-zero value is ignored (the example still counts for
//! naive Bayes); an embedding of another length than the query's is skipped for that query;
//! a token repeated in one example counts once. Options that make no sense (non-finite or
//! non-positive `alpha`, non-finite `knn_weight`) fall back to their defaults, and
//! `knn_weight` is clamped to `[0, 1]`. Nothing here panics on empty or odd input.
//!
//! [`evaluate`] measures the model on held-out examples next to two baselines: "always the
//! most frequent folders", and "the folder of the most similar already filed image".

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One already filed image: its folder and what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The folder, as a path relative to the library root (e.g. `Travel/2019`).
    pub label: String,
    /// Binary features: tokens such as `tag:1girl` or `person:amy h`.
    pub features: Vec<String>,
    /// An optional embedding (ideally unit length, e.g. CLIP).
    pub embedding: Option<Vec<f32>>,
    /// How much this example counts; not a positive finite number means "ignore it".
    pub weight: f32,
}

/// One suggested folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// The folder (an [`Example::label`]).
    pub label: String,
    /// The model's probability that the image belongs there, in `[0, 1]`.
    pub confidence: f32,
}

/// Suggestions with the reasons behind the first one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Explained {
    /// Folders by descending confidence (ties by label), at most `top` of them.
    pub suggestions: Vec<Suggestion>,
    /// Up to five of the query's features that most favour the top folder over the
    /// runner-up: `(feature, log p(f | top) - log p(f | runner-up))`, positive only, largest
    /// first. Empty with fewer than two folders or no suggestions.
    pub reasons: Vec<(String, f32)>,
}

/// Training and mixing options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Laplace smoothing pseudo-count for naive Bayes (default 1.0).
    pub alpha: f32,
    /// Number of neighbours for kNN (default 10; 0 turns kNN off).
    pub k: usize,
    /// Share of kNN in the mix, `0..=1` (default 0.5).
    pub knn_weight: f32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            alpha: 1.0,
            k: 10,
            knn_weight: 0.5,
        }
    }
}

/// Accuracy on held-out examples, with baselines for comparison. Rates are in `[0, 1]`,
/// and 0 when `n` is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Evaluation {
    /// Share of test examples whose folder is the model's first suggestion.
    pub top1: f64,
    /// Share whose folder is among the model's first three suggestions.
    pub top3: f64,
    /// Number of test examples.
    pub n: usize,
    /// Top-1 rate of always suggesting the most frequent training folder.
    pub baseline_frequent_top1: f64,
    /// Top-3 rate of always suggesting the three most frequent training folders.
    pub baseline_frequent_top3: f64,
    /// Top-1 rate of suggesting the folder of the most similar training example.
    pub baseline_last_similar_top1: f64,
}

/// A training embedding kept for kNN.
#[derive(Debug, Clone)]
struct Neighbour {
    class: usize,
    /// Unit length, all finite.
    embedding: Vec<f32>,
    weight: f64,
}

/// A trained folder classifier. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Folder names, sorted; a class is an index into this.
    labels: Vec<String>,
    /// Total training weight per class.
    class_weight: Vec<f64>,
    log_prior: Vec<f64>,
    /// Per class: the sum over the whole vocabulary of `log (1 - p(f | class))`.
    sum_log_absent: Vec<f64>,
    /// Feature → weighted count per class, sorted by class; classes absent have count 0.
    vocab: HashMap<String, Vec<(usize, f64)>>,
    neighbours: Vec<Neighbour>,
    alpha: f64,
    k: usize,
    knn_weight: f64,
}

/// The weight an example counts with: its weight when positive and finite, else 0.
fn clean_weight(weight: f32) -> f64 {
    if weight.is_finite() && weight > 0.0 {
        f64::from(weight)
    } else {
        0.0
    }
}

/// The vector scaled to unit length, or `None` if it has a non-finite value or no length.
fn normalised(v: &[f32]) -> Option<Vec<f32>> {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return None;
    }
    Some(v.iter().map(|&x| (f64::from(x) / norm) as f32).collect())
}

/// Dot product in `f64`.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum()
}

/// Descending order with NaN last (the worst value).
fn descending(a: f64, b: f64) -> Ordering {
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    key(b).total_cmp(&key(a))
}

/// The distinct features of a list, in sorted order.
fn distinct(features: &[String]) -> BTreeSet<&str> {
    features.iter().map(String::as_str).collect()
}

/// Probabilities from log-scores (softmax via log-sum-exp); uniform if nothing is finite.
fn softmax(scores: &[f64]) -> Vec<f64> {
    let max = scores
        .iter()
        .copied()
        .filter(|s| s.is_finite())
        .fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        let n = scores.len().max(1) as f64;
        return vec![1.0 / n; scores.len()];
    }
    let exps: Vec<f64> = scores
        .iter()
        .map(|&s| if s.is_finite() { (s - max).exp() } else { 0.0 })
        .collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// Labels by descending total weight (ties by label), at most `n`; ignored examples skipped.
fn frequent_labels(examples: &[Example], n: usize) -> Vec<String> {
    let mut weights: BTreeMap<&str, f64> = BTreeMap::new();
    for e in examples {
        let w = clean_weight(e.weight);
        if w > 0.0 {
            *weights.entry(e.label.as_str()).or_insert(0.0) += w;
        }
    }
    let mut ranked: Vec<(&str, f64)> = weights.into_iter().collect();
    ranked.sort_by(|a, b| descending(a.1, b.1).then_with(|| a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(n)
        .map(|(l, _)| l.to_string())
        .collect()
}

/// The most frequent folder (by total weight, ties by label), or `None` if there is none.
/// This is the simplest baseline: file everything where most things already are.
pub fn most_frequent(examples: &[Example]) -> Option<String> {
    frequent_labels(examples, 1).into_iter().next()
}

impl Model {
    /// Trains on already filed examples. Never fails: with no usable example the model has
    /// no folders and suggests nothing.
    pub fn train(examples: &[Example], options: &Options) -> Model {
        let alpha = f64::from(options.alpha);
        let alpha = if alpha.is_finite() && alpha > 0.0 {
            alpha
        } else {
            f64::from(Options::default().alpha)
        };
        let knn_weight = f64::from(options.knn_weight);
        let knn_weight = if knn_weight.is_finite() {
            knn_weight.clamp(0.0, 1.0)
        } else {
            f64::from(Options::default().knn_weight)
        };
        let (labels, class_weight) = Self::classes(examples);
        let total: f64 = class_weight.iter().sum();
        let mut model = Model {
            log_prior: class_weight.iter().map(|w| (w / total).ln()).collect(),
            labels,
            class_weight,
            alpha,
            k: options.k,
            knn_weight,
            ..Model::default()
        };
        let class_of: HashMap<&str, usize> = model
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        model.vocab = Self::count_features(examples, &class_of);
        model.sum_log_absent = model.sum_log_absent_per_class();
        model.neighbours = examples
            .iter()
            .filter(|e| clean_weight(e.weight) > 0.0)
            .filter_map(|e| {
                Some(Neighbour {
                    class: *class_of.get(e.label.as_str())?,
                    embedding: normalised(e.embedding.as_deref()?)?,
                    weight: clean_weight(e.weight),
                })
            })
            .collect();
        model
    }

    /// Sorted labels with a positive total weight, and those weights.
    fn classes(examples: &[Example]) -> (Vec<String>, Vec<f64>) {
        let mut weights: BTreeMap<&str, f64> = BTreeMap::new();
        for e in examples {
            let w = clean_weight(e.weight);
            if w > 0.0 {
                *weights.entry(e.label.as_str()).or_insert(0.0) += w;
            }
        }
        weights
            .into_iter()
            .filter(|(_, w)| w.is_finite() && *w > 0.0)
            .map(|(l, w)| (l.to_string(), w))
            .unzip()
    }

    /// Weighted count of each feature per class (each feature once per example).
    fn count_features(
        examples: &[Example],
        class_of: &HashMap<&str, usize>,
    ) -> HashMap<String, Vec<(usize, f64)>> {
        let mut counts: HashMap<&str, BTreeMap<usize, f64>> = HashMap::new();
        for e in examples {
            let w = clean_weight(e.weight);
            let Some(&class) = class_of.get(e.label.as_str()) else {
                continue;
            };
            if w <= 0.0 {
                continue;
            }
            for f in distinct(&e.features) {
                *counts.entry(f).or_default().entry(class).or_insert(0.0) += w;
            }
        }
        counts
            .into_iter()
            .map(|(f, per_class)| (f.to_string(), per_class.into_iter().collect()))
            .collect()
    }

    /// `(log p, log (1 - p))` for a feature seen with weighted count `count` in `class`.
    fn log_p(&self, class: usize, count: f64) -> (f64, f64) {
        let n = self.class_weight.get(class).copied().unwrap_or(0.0);
        let denominator = (n + 2.0 * self.alpha).ln();
        let present = (count + self.alpha).ln() - denominator;
        let absent = ((n - count).max(0.0) + self.alpha).ln() - denominator;
        (present, absent)
    }

    /// The weighted count of `feature` in `class` (0 when never seen there).
    fn count(&self, feature: &str, class: usize) -> f64 {
        self.vocab
            .get(feature)
            .and_then(|per_class| {
                let i = per_class.binary_search_by_key(&class, |&(c, _)| c).ok()?;
                per_class.get(i).map(|&(_, n)| n)
            })
            .unwrap_or(0.0)
    }

    /// Per class, `sum over the vocabulary of log (1 - p(f | class))`: every feature unseen
    /// in the class contributes the same base value, corrected for the features seen there.
    fn sum_log_absent_per_class(&self) -> Vec<f64> {
        let vocabulary = self.vocab.len() as f64;
        let mut sums: Vec<f64> = (0..self.labels.len())
            .map(|c| vocabulary * self.log_p(c, 0.0).1)
            .collect();
        for per_class in self.vocab.values() {
            for &(c, n) in per_class {
                if let Some(sum) = sums.get_mut(c) {
                    *sum += self.log_p(c, n).1 - self.log_p(c, 0.0).1;
                }
            }
        }
        sums
    }

    /// Naive Bayes posterior over the classes for a set of features.
    fn naive_bayes(&self, features: &BTreeSet<&str>) -> Vec<f64> {
        let classes = self.labels.len();
        let base: Vec<f64> = (0..classes)
            .map(|c| {
                let (present, absent) = self.log_p(c, 0.0);
                present - absent
            })
            .collect();
        let mut scores: Vec<f64> = (0..classes)
            .map(|c| self.log_prior[c] + self.sum_log_absent[c])
            .collect();
        for f in features {
            let Some(per_class) = self.vocab.get(*f) else {
                continue;
            };
            for (score, b) in scores.iter_mut().zip(&base) {
                *score += b;
            }
            for &(c, n) in per_class {
                let (present, absent) = self.log_p(c, n);
                if let (Some(score), Some(b)) = (scores.get_mut(c), base.get(c)) {
                    *score += present - absent - b;
                }
            }
        }
        softmax(&scores)
    }

    /// kNN vote distribution over the classes, or `None` without any positive vote.
    fn knn(&self, embedding: Option<&[f32]>) -> Option<Vec<f64>> {
        if self.k == 0 || self.knn_weight <= 0.0 {
            return None;
        }
        let query = normalised(embedding?)?;
        let mut similar: Vec<(f64, usize)> = self
            .neighbours
            .iter()
            .enumerate()
            .filter(|(_, n)| n.embedding.len() == query.len())
            .map(|(i, n)| (dot(&query, &n.embedding), i))
            .filter(|(s, _)| s.is_finite())
            .collect();
        similar.sort_by(|a, b| descending(a.0, b.0).then(a.1.cmp(&b.1)));
        let mut votes = vec![0.0f64; self.labels.len()];
        for &(s, i) in similar.iter().take(self.k) {
            if let Some(n) = self.neighbours.get(i) {
                if let Some(v) = votes.get_mut(n.class) {
                    *v += s.max(0.0) * n.weight;
                }
            }
        }
        let total: f64 = votes.iter().sum();
        if !(total.is_finite() && total > 0.0) {
            return None;
        }
        Some(votes.iter().map(|v| v / total).collect())
    }

    /// Suggests up to `top` folders for an image with these features and (optionally) this
    /// embedding, with the reasons for the first. Empty if the model has no folders.
    pub fn suggest(&self, features: &[String], embedding: Option<&[f32]>, top: usize) -> Explained {
        if self.labels.is_empty() {
            return Explained::default();
        }
        let features = distinct(features);
        let mut p = self.naive_bayes(&features);
        if let Some(knn) = self.knn(embedding) {
            let w = self.knn_weight;
            for (p, q) in p.iter_mut().zip(&knn) {
                *p = (1.0 - w) * *p + w * q;
            }
        }
        let mut ranked: Vec<usize> = (0..self.labels.len()).collect();
        ranked.sort_by(|&a, &b| {
            descending(p[a], p[b]).then_with(|| self.labels[a].cmp(&self.labels[b]))
        });
        let reasons = match (ranked.first(), ranked.get(1)) {
            (Some(&best), Some(&second)) if top > 0 => self.reasons(&features, best, second),
            _ => Vec::new(),
        };
        let suggestions = ranked
            .into_iter()
            .take(top)
            .map(|c| Suggestion {
                label: self.labels[c].clone(),
                confidence: p[c] as f32,
            })
            .collect();
        Explained {
            suggestions,
            reasons,
        }
    }

    /// The query features favouring `best` over `second`, by log-likelihood ratio.
    fn reasons(&self, features: &BTreeSet<&str>, best: usize, second: usize) -> Vec<(String, f32)> {
        let mut reasons: Vec<(String, f64)> = features
            .iter()
            .filter(|f| self.vocab.contains_key(**f))
            .map(|&f| {
                let (a, _) = self.log_p(best, self.count(f, best));
                let (b, _) = self.log_p(second, self.count(f, second));
                (f.to_string(), a - b)
            })
            .filter(|(_, r)| r.is_finite() && *r > 0.0)
            .collect();
        reasons.sort_by(|a, b| descending(a.1, b.1).then_with(|| a.0.cmp(&b.0)));
        reasons.truncate(5);
        reasons.into_iter().map(|(f, r)| (f, r as f32)).collect()
    }

    /// The number of folders the model knows.
    pub fn labels(&self) -> usize {
        self.labels.len()
    }
}

/// A training example prepared for the "most similar image" baseline.
struct Filed<'a> {
    label: &'a str,
    features: BTreeSet<&'a str>,
    embedding: Option<Vec<f32>>,
}

/// Jaccard similarity of two sets; 0 when both are empty.
fn jaccard(a: &BTreeSet<&str>, b: &BTreeSet<&str>) -> f64 {
    let both = a.intersection(b).count();
    let either = a.len() + b.len() - both;
    if either == 0 {
        0.0
    } else {
        both as f64 / either as f64
    }
}

/// The label with the highest similarity, NaN counting as the worst; ties go to the later
/// candidate.
fn last_best<'a>(candidates: impl Iterator<Item = (f64, &'a str)>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for (similarity, label) in candidates {
        let similarity = if similarity.is_nan() {
            f64::NEG_INFINITY
        } else {
            similarity
        };
        if best.is_none_or(|(b, _)| similarity >= b) {
            best = Some((similarity, label));
        }
    }
    best.map(|(_, label)| label)
}

/// The label of the most similar filed example: by embedding cosine when the query and some
/// filed example have comparable embeddings, else by Jaccard similarity of the features.
/// Ties go to the later (most recently filed) example.
fn most_similar_label<'a>(filed: &[Filed<'a>], query: &Example) -> Option<&'a str> {
    if let Some(q) = query.embedding.as_deref().and_then(normalised) {
        let by_embedding = last_best(filed.iter().filter_map(|f| {
            let e = f.embedding.as_ref().filter(|e| e.len() == q.len())?;
            Some((dot(&q, e), f.label))
        }));
        if by_embedding.is_some() {
            return by_embedding;
        }
    }
    let features = distinct(&query.features);
    last_best(
        filed
            .iter()
            .map(|f| (jaccard(&features, &f.features), f.label)),
    )
}

/// Trains on `train` and measures on `test` (each test example counts once, whatever its
/// weight), together with the frequency and most-similar-image baselines.
pub fn evaluate(train: &[Example], test: &[Example], options: &Options) -> Evaluation {
    let model = Model::train(train, options);
    let frequent = frequent_labels(train, 3);
    let filed: Vec<Filed> = train
        .iter()
        .filter(|e| clean_weight(e.weight) > 0.0)
        .map(|e| Filed {
            label: &e.label,
            features: distinct(&e.features),
            embedding: e.embedding.as_deref().and_then(normalised),
        })
        .collect();
    let mut hits = [0usize; 5];
    for t in test {
        let explained = model.suggest(&t.features, t.embedding.as_deref(), 3);
        let labels: Vec<&str> = explained
            .suggestions
            .iter()
            .map(|s| s.label.as_str())
            .collect();
        let checks = [
            labels.first() == Some(&t.label.as_str()),
            labels.contains(&t.label.as_str()),
            frequent.first() == Some(&t.label),
            frequent.contains(&t.label),
            most_similar_label(&filed, t) == Some(t.label.as_str()),
        ];
        for (hit, check) in hits.iter_mut().zip(checks) {
            *hit += usize::from(check);
        }
    }
    let n = test.len();
    let rate = |hits: usize| if n == 0 { 0.0 } else { hits as f64 / n as f64 };
    Evaluation {
        top1: rate(hits[0]),
        top3: rate(hits[1]),
        n,
        baseline_frequent_top1: rate(hits[2]),
        baseline_frequent_top3: rate(hits[3]),
        baseline_last_similar_top1: rate(hits[4]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn unit(&mut self) -> f32 {
            (self.next() % 1_000_000) as f32 / 1_000_000.0
        }
    }

    fn ex(label: &str, features: &[&str]) -> Example {
        Example {
            label: label.to_string(),
            features: features.iter().map(|f| f.to_string()).collect(),
            embedding: None,
            weight: 1.0,
        }
    }

    fn strings(features: &[&str]) -> Vec<String> {
        features.iter().map(|f| f.to_string()).collect()
    }

    const FOLDERS: [&str; 3] = ["Art/Gen", "People/Amy", "Travel/2019"];

    /// Folder-specific tags plus shared noise tags, and sometimes a tag of another folder.
    fn separable(rng: &mut Lcg, n: usize) -> Vec<Example> {
        (0..n)
            .map(|_| {
                let c = rng.below(3);
                let mut features: Vec<String> = (0..3)
                    .map(|_| format!("tag:c{c}_{}", rng.below(8)))
                    .collect();
                features.extend((0..3).map(|_| format!("tag:noise{}", rng.below(40))));
                if rng.below(10) == 0 {
                    features.push(format!("tag:c{}_{}", (c + 1) % 3, rng.below(8)));
                }
                Example {
                    label: FOLDERS[c].to_string(),
                    features,
                    embedding: None,
                    weight: 1.0,
                }
            })
            .collect()
    }

    #[test]
    fn separable_library_is_learned() {
        let mut rng = Lcg(42);
        let train = separable(&mut rng, 90);
        let test = separable(&mut rng, 60);
        let e = evaluate(&train, &test, &Options::default());
        assert_eq!(e.n, 60);
        assert!(e.top1 >= 0.9, "{e:?}");
        assert!(e.top3 >= e.top1);
        assert!(e.top1 > e.baseline_frequent_top1);
    }

    /// Uninformative features, embeddings clustered by folder.
    fn clustered(rng: &mut Lcg, n: usize) -> Vec<Example> {
        let dim = 16;
        (0..n)
            .map(|_| {
                let c = rng.below(3);
                let embedding = (0..dim)
                    .map(|d| f32::from(u8::from(d % 3 == c)) + (rng.unit() - 0.5) * 0.6)
                    .collect();
                Example {
                    label: FOLDERS[c].to_string(),
                    features: (0..3).map(|_| format!("tag:t{}", rng.below(20))).collect(),
                    embedding: Some(embedding),
                    weight: 1.0,
                }
            })
            .collect()
    }

    #[test]
    fn knn_helps_with_clustered_embeddings() {
        let mut rng = Lcg(7);
        let train = clustered(&mut rng, 90);
        let test = clustered(&mut rng, 60);
        let bayes_only = Options {
            knn_weight: 0.0,
            ..Options::default()
        };
        let without = evaluate(&train, &test, &bayes_only);
        let with = evaluate(&train, &test, &Options::default());
        assert!(with.top1 >= 0.9, "{with:?}");
        assert!(with.top1 >= without.top1 + 0.2, "{without:?} vs {with:?}");
        assert!(with.baseline_last_similar_top1 >= 0.8, "{with:?}");
    }

    #[test]
    fn reasons_name_the_discriminative_feature() {
        let train = [
            ex("Travel", &["tag:beach", "gen:comfyui"]),
            ex("Travel", &["tag:beach", "tag:sky"]),
            ex("People", &["person:amy", "gen:comfyui"]),
            ex("People", &["person:amy", "tag:sky"]),
        ];
        let model = Model::train(&train, &Options::default());
        let query = strings(&["gen:comfyui", "tag:beach", "tag:unseen"]);
        let e = model.suggest(&query, None, 5);
        assert_eq!(e.suggestions[0].label, "Travel");
        assert_eq!(e.suggestions.len(), 2);
        assert_eq!(e.reasons.len(), 1, "{:?}", e.reasons);
        assert_eq!(e.reasons[0].0, "tag:beach");
        // log(3/4) - log(1/4) with alpha = 1 and two examples per folder.
        assert!((e.reasons[0].1 - 3f32.ln()).abs() < 1e-5);
    }

    #[test]
    fn evaluate_tiny_hand_computed_case() {
        let train = [ex("A", &["x"]), ex("A", &["x"]), ex("B", &["y"])];
        let test = [
            ex("A", &["x"]),
            ex("B", &["y"]),
            ex("C", &["z"]),
            ex("B", &["x"]),
        ];
        let e = evaluate(&train, &test, &Options::default());
        let want = Evaluation {
            top1: 0.5,
            top3: 0.75,
            n: 4,
            baseline_frequent_top1: 0.25,
            baseline_frequent_top3: 0.75,
            baseline_last_similar_top1: 0.5,
        };
        assert_eq!(e, want);
        // p(A | x) = (2/3 · 3/4 · 3/4) / (2/3 · 3/4 · 3/4 + 1/3 · 1/3 · 1/3).
        let model = Model::train(&train, &Options::default());
        let s = model.suggest(&strings(&["x"]), None, 3).suggestions;
        let p = 0.375 / (0.375 + 1.0 / 27.0);
        assert!((f64::from(s[0].confidence) - p).abs() < 1e-6, "{s:?}");
        assert!((s.iter().map(|s| s.confidence).sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(most_frequent(&train).as_deref(), Some("A"));
    }

    #[test]
    fn last_similar_ties_go_to_the_most_recent() {
        let train = [ex("A", &["x"]), ex("B", &["x"])];
        let e = evaluate(&train, &[ex("B", &["x"])], &Options::default());
        assert_eq!(e.baseline_last_similar_top1, 1.0);
        let mut near = ex("A", &[]);
        near.embedding = Some(vec![1.0, 0.0]);
        let mut far = ex("B", &[]);
        far.embedding = Some(vec![0.0, 1.0]);
        let mut query = ex("A", &[]);
        query.embedding = Some(vec![0.9, 0.1]);
        let e = evaluate(&[near, far], &[query], &Options::default());
        assert_eq!(e.baseline_last_similar_top1, 1.0);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let options = Options::default();
        let empty = Model::train(&[], &options);
        assert_eq!(empty.labels(), 0);
        assert_eq!(
            empty.suggest(&strings(&["a"]), Some(&[1.0]), 3),
            Explained::default()
        );
        assert_eq!(evaluate(&[], &[], &options), Evaluation::default());
        assert_eq!(evaluate(&[], &[ex("A", &[])], &options).top1, 0.0);
        assert_eq!(most_frequent(&[]), None);

        let one = Model::train(&[ex("Only", &[])], &options);
        let e = one.suggest(&[], None, 3);
        assert_eq!(e.suggestions.len(), 1);
        assert!((e.suggestions[0].confidence - 1.0).abs() < 1e-6);
        assert!(e.reasons.is_empty());

        let mut odd = vec![
            ex("A", &["a", "a"]),
            ex("B", &["b"]),
            ex("C", &["c"]),
            ex("D", &["d"]),
        ];
        odd[0].embedding = Some(vec![f32::NAN, 1.0]);
        odd[1].embedding = Some(vec![1.0, 0.0, 0.0]);
        odd[2].weight = f32::NAN;
        odd[3].weight = -1.0;
        let weird = Options {
            alpha: f32::NAN,
            k: usize::MAX,
            knn_weight: f32::INFINITY,
        };
        let model = Model::train(&odd, &weird);
        assert_eq!(model.labels(), 2);
        for embedding in [
            None,
            Some(&[1.0f32, 0.0][..]),
            Some(&[0.0; 3][..]),
            Some(&[f32::NAN; 3][..]),
            Some(&[][..]),
        ] {
            let e = model.suggest(&strings(&["a", "zzz"]), embedding, usize::MAX);
            assert_eq!(e.suggestions.len(), 2);
            assert!(e.suggestions.iter().all(|s| s.confidence.is_finite()));
            assert_eq!(model.suggest(&[], embedding, 0), Explained::default());
        }
        let zero_alpha = Options {
            alpha: 0.0,
            ..options
        };
        let model = Model::train(&odd, &zero_alpha);
        assert!(model.suggest(&strings(&["a"]), None, 1).suggestions[0]
            .confidence
            .is_finite());
        assert_eq!(most_frequent(&odd[2..]), None);
    }

    #[test]
    fn large_vocabulary_scores_match_direct_sum() {
        let mut rng = Lcg(3);
        let train: Vec<Example> = (0..50)
            .map(|i| {
                let features: Vec<String> =
                    (0..5).map(|_| format!("f{}", rng.below(200))).collect();
                Example {
                    label: format!("L{}", i % 4),
                    features,
                    embedding: None,
                    weight: 1.0 + rng.unit(),
                }
            })
            .collect();
        let model = Model::train(&train, &Options::default());
        let query = strings(&["f1", "f2", "f3", "nope"]);
        let got = model.naive_bayes(&distinct(&query));
        // Direct O(vocabulary) computation.
        let scores: Vec<f64> = (0..model.labels())
            .map(|c| {
                let mut s = model.log_prior[c];
                for f in model.vocab.keys() {
                    let (present, absent) = model.log_p(c, model.count(f, c));
                    s += if query.contains(f) { present } else { absent };
                }
                s
            })
            .collect();
        for (a, b) in got.iter().zip(softmax(&scores)) {
            assert!((a - b).abs() < 1e-9, "{got:?}");
        }
    }
}
