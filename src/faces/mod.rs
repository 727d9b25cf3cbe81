//! Faces: the pure parts of detection and recognition. YuNet's output decoding and
//! suppression ([`detect`]), alignment to the recogniser's template and sharpness
//! ([`align`]), the one-to-one assignment of faces to people ([`assign`]), clustering of
//! unknown faces ([`cluster`]), and the gallery of enrolled people ([`Gallery`]). The models
//! themselves run in `engine::faces`; the gallery's file is the store's.

pub mod align;
pub mod assign;
pub mod cluster;
pub mod detect;

/// SFace's cosine similarity at or above which two faces are one person (OpenCV's figure
/// from its LFW evaluation of the model).
pub const SFACE_SAME_PERSON: f32 = 0.363;

/// One enrolled person.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// As enrolled (the case is kept for display; matching ignores it).
    pub name: String,
    /// Unit-length embeddings, one per enrolled photo.
    pub embeddings: Vec<Vec<f32>>,
}

/// The enrolled people of a project.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gallery {
    pub people: Vec<Person>,
    /// The fingerprint of the recogniser the embeddings came from.
    pub recognizer: String,
}

/// The key a name is matched by: the tag normalisation every tag gets (case-folded, `_` as a
/// space, runs of space as one), so two names that give one `person:` tag are one person.
pub fn name_key(name: &str) -> String {
    crate::tags::normalise(name).unwrap_or_else(|| name.trim().to_lowercase())
}

impl Gallery {
    /// The person named `name`, case-insensitively.
    pub fn find(&self, name: &str) -> Option<usize> {
        let key = name_key(name);
        self.people.iter().position(|p| name_key(&p.name) == key)
    }

    /// A fingerprint of everything recognition depends on (names, embeddings, recogniser):
    /// part of the cache key of a recognising variant, so enrolling someone recomputes.
    pub fn fingerprint(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.recognizer.as_bytes());
        for p in &self.people {
            h.update(&(p.name.len() as u64).to_le_bytes());
            h.update(p.name.as_bytes());
            h.update(&(p.embeddings.len() as u64).to_le_bytes());
            for e in &p.embeddings {
                h.update(&(e.len() as u64).to_le_bytes());
                for v in e {
                    h.update(&v.to_le_bytes());
                }
            }
        }
        h.finalize().to_hex().to_string()
    }

    /// Each face's person (index into `people`) and similarity: a person's similarity to a
    /// face is its best enrolled photo's cosine; faces and people are then paired one to one
    /// for the largest total similarity, pairs below `min_similarity` never made.
    pub fn recognise(&self, faces: &[&[f32]], min_similarity: f32) -> Vec<Option<(usize, f32)>> {
        let people = self.people.len();
        let mut sim = vec![f32::NEG_INFINITY; faces.len() * people];
        for (f, face) in faces.iter().enumerate() {
            for (p, person) in self.people.iter().enumerate() {
                sim[f * people + p] = person
                    .embeddings
                    .iter()
                    .filter(|e| e.len() == face.len())
                    .map(|e| crate::similarity::exact::dot(e, face))
                    .filter(|s| s.is_finite())
                    .fold(f32::NEG_INFINITY, f32::max);
            }
        }
        assign::assign(&sim, faces.len(), people, min_similarity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_person_is_never_assigned_twice() {
        let g = Gallery {
            people: vec![
                Person {
                    name: "Amy H".into(),
                    embeddings: vec![vec![1.0, 0.0]],
                },
                Person {
                    name: "Bo".into(),
                    embeddings: vec![vec![0.0, 1.0]],
                },
            ],
            recognizer: "r".into(),
        };
        let a: &[f32] = &[0.99, 0.14];
        let b: &[f32] = &[0.95, 0.31];
        let out = g.recognise(&[a, b], 0.2);
        assert_eq!(out[0].map(|x| x.0), Some(0));
        assert_eq!(out[1].map(|x| x.0), Some(1));
        assert_eq!(g.find("amy h"), Some(0));
        assert_eq!(g.find("nobody"), None);
        let none = g.recognise(&[a, b], 0.97);
        assert_eq!(none[0].map(|x| x.0), Some(0));
        assert_eq!(none[1], None);
    }
}
