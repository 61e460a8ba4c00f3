//! The length reward: 1 for a completion of `min..=max` tokens, falling off as `len / min`
//! below and `max / len` above, so a completion twice too long scores ½ rather than 0 and
//! the gradient still points the right way.

use crate::config::grpo::LengthReward;

#[derive(Debug, Clone, Copy)]
pub struct Length {
    min: usize,
    max: usize,
}

impl Length {
    pub fn new(spec: &LengthReward) -> Result<Self, String> {
        if spec.max == 0 || spec.min > spec.max {
            return Err(format!(
                "length needs 0 <= min <= max and max >= 1 (it has min {}, max {})",
                spec.min, spec.max
            ));
        }
        Ok(Length {
            min: spec.min,
            max: spec.max,
        })
    }

    pub fn score(&self, tokens: usize) -> f64 {
        if tokens < self.min {
            tokens as f64 / self.min as f64
        } else if tokens > self.max {
            self.max as f64 / tokens as f64
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_inside_the_range_and_a_ratio_outside() {
        let l = Length::new(&LengthReward { min: 50, max: 200 }).unwrap();
        assert_eq!(l.score(50), 1.0);
        assert_eq!(l.score(200), 1.0);
        assert_eq!(l.score(25), 0.5);
        assert_eq!(l.score(0), 0.0);
        assert_eq!(l.score(400), 0.5);
        let from_zero = Length::new(&LengthReward { min: 0, max: 1 }).unwrap();
        assert_eq!(from_zero.score(0), 1.0);
        assert_eq!(from_zero.score(4), 0.25);
        assert!(Length::new(&LengthReward { min: 3, max: 2 }).is_err());
        assert!(Length::new(&LengthReward { min: 0, max: 0 }).is_err());
    }
}
