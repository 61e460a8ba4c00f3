//! Learning-rate schedules with linear warm-up, as transformers' `get_*_schedule_with_warmup`.

pub use crate::config::Schedule;

#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    pub schedule: Schedule,
    pub peak_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Scheduler {
    /// The learning rate for optimizer step `step` (0-based, as transformers counts).
    pub fn lr(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.peak_lr * step as f64 / self.warmup_steps.max(1) as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.schedule {
            Schedule::Constant => self.peak_lr,
            Schedule::Linear => self.peak_lr * (1.0 - progress).max(0.0),
            Schedule::Cosine => {
                self.peak_lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let s = Scheduler {
            schedule: Schedule::Cosine,
            peak_lr: 1e-3,
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-12);
        assert!((s.lr(10) - 1e-3).abs() < 1e-12);
        assert!((s.lr(60) - 5e-4).abs() < 1e-12);
        assert!(s.lr(110).abs() < 1e-12);
        let l = Scheduler {
            schedule: Schedule::Linear,
            ..s.clone()
        };
        assert!((l.lr(60) - 5e-4).abs() < 1e-12);
        let c = Scheduler {
            schedule: Schedule::Constant,
            ..s
        };
        assert_eq!(c.lr(100), 1e-3);
    }
}
