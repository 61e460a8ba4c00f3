//! The persona reward: the share of marker phrases a completion contains, ignoring case,
//! so a persona that shows in half its tics scores ½. Blank markers are left out of the
//! count (they would be present in everything).

use crate::config::grpo::PersonaReward;

#[derive(Debug, Clone)]
pub struct Persona {
    /// Lowercased, blank ones dropped.
    markers: Vec<String>,
}

impl Persona {
    pub fn new(spec: &PersonaReward) -> Result<Self, String> {
        let markers: Vec<String> = spec
            .markers
            .iter()
            .filter(|m| !m.trim().is_empty())
            .map(|m| m.to_lowercase())
            .collect();
        if markers.is_empty() {
            return Err("persona.markers must name at least one marker".into());
        }
        Ok(Persona { markers })
    }

    pub fn score(&self, completion: &str) -> f64 {
        let text = completion.to_lowercase();
        let hits = self
            .markers
            .iter()
            .filter(|m| text.contains(*m as &str))
            .count();
        hits as f64 / self.markers.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persona(markers: &[&str]) -> Result<Persona, String> {
        Persona::new(&PersonaReward {
            markers: markers.iter().map(|m| m.to_string()).collect(),
        })
    }

    #[test]
    fn the_share_of_markers_present_ignoring_case() {
        let p = persona(&["Arr", "matey", "  ", "ÉCLAIR"]).unwrap();
        assert_eq!(p.score("ARR, ye scurvy dog"), 1.0 / 3.0);
        assert_eq!(p.score("arr matey, an éclair!"), 1.0);
        assert_eq!(p.score("Good morning."), 0.0);
        assert_eq!(p.score(""), 0.0);
        assert!(persona(&[" ", ""]).is_err());
        assert!(persona(&[]).is_err());
    }
}
