//! Which waiting runs start now: in queue order, each whose devices are free. A run that
//! must wait keeps what it asked for reserved, so a later run never takes the device an
//! earlier one is waiting for (the queue's order holds); a run asking for more GPUs than the
//! machine has reserves nothing and waits for ever (`tunelab queue list` says why).

use super::devices::{Need, Slot};
use std::collections::BTreeSet;

/// A run to start: its index among the entries given, and the GPUs it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub index: usize,
    pub gpus: Vec<usize>,
}

/// The runs of `waiting` (`(index, need)` in queue order) that start now, given the slots
/// already `busy` and the machine's `gpu_count`.
pub fn plan(waiting: &[(usize, Need)], busy: &BTreeSet<Slot>, gpu_count: usize) -> Vec<Start> {
    let mut taken = busy.clone();
    let mut out = Vec::new();
    for &(index, need) in waiting {
        let free: Vec<usize> = (0..gpu_count)
            .filter(|k| !taken.contains(&Slot::Gpu(*k)))
            .collect();
        let (slots, gpus): (Vec<Slot>, Vec<usize>) = match need {
            Need::Cpu => (vec![Slot::Cpu], vec![]),
            Need::Gpu(k) => (vec![Slot::Gpu(k)], vec![]),
            Need::AnyGpus(n) if n > gpu_count => continue,
            Need::AnyGpus(n) if free.len() < n => {
                // Wait, holding the free GPUs so nothing later jumps ahead.
                taken.extend(free.iter().map(|k| Slot::Gpu(*k)));
                continue;
            }
            Need::AnyGpus(n) => {
                let g: Vec<usize> = free[..n].to_vec();
                (g.iter().map(|k| Slot::Gpu(*k)).collect(), g)
            }
        };
        let ready = slots.iter().all(|s| !taken.contains(s));
        taken.extend(slots);
        if ready {
            out.push(Start { index, gpus });
        }
    }
    out
}

/// Why a waiting run has not started: the slots in the way, or that the machine is too
/// small.
pub fn why_waiting(need: Need, busy: &BTreeSet<Slot>, gpu_count: usize) -> String {
    match need {
        Need::AnyGpus(n) if n > gpu_count => {
            format!("needs {n} GPUs; this machine has {gpu_count} (TUNELAB_GPUS overrides)")
        }
        Need::Cpu if busy.contains(&Slot::Cpu) => "waits for the CPU".into(),
        Need::Gpu(k) if busy.contains(&Slot::Gpu(k)) => format!("waits for cuda:{k}"),
        Need::AnyGpus(n) => format!("waits for {n} free GPU{}", if n == 1 { "" } else { "s" }),
        _ => "waits for an earlier run".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(slots: &[Slot]) -> BTreeSet<Slot> {
        slots.iter().copied().collect()
    }

    #[test]
    fn one_run_per_device_in_queue_order() {
        let w = [
            (0, Need::Cpu),
            (1, Need::Cpu),
            (2, Need::AnyGpus(1)),
            (3, Need::AnyGpus(1)),
        ];
        let s = plan(&w, &busy(&[]), 2);
        assert_eq!(
            s,
            [
                Start {
                    index: 0,
                    gpus: vec![]
                },
                Start {
                    index: 2,
                    gpus: vec![0]
                },
                Start {
                    index: 3,
                    gpus: vec![1]
                },
            ]
        );
        // The CPU is busy with a run started outside the queue: no CPU run starts.
        let s = plan(&w, &busy(&[Slot::Cpu, Slot::Gpu(0)]), 2);
        assert_eq!(
            s,
            [Start {
                index: 2,
                gpus: vec![1]
            }]
        );
    }

    #[test]
    fn a_waiting_run_keeps_later_ones_off_its_devices() {
        // Two GPUs wanted, one free: the single-GPU run behind it waits too.
        let w = [(0, Need::AnyGpus(2)), (1, Need::AnyGpus(1)), (2, Need::Cpu)];
        let s = plan(&w, &busy(&[Slot::Gpu(0)]), 2);
        assert_eq!(
            s,
            [Start {
                index: 2,
                gpus: vec![]
            }]
        );
        // A named GPU that is busy holds only that GPU.
        let w = [(0, Need::Gpu(1)), (1, Need::Gpu(0))];
        assert_eq!(
            plan(&w, &busy(&[Slot::Gpu(1)]), 2),
            [Start {
                index: 1,
                gpus: vec![]
            }]
        );
        // More GPUs than the machine has: it waits and blocks nobody.
        let w = [(0, Need::AnyGpus(4)), (1, Need::AnyGpus(1))];
        assert_eq!(
            plan(&w, &busy(&[]), 2),
            [Start {
                index: 1,
                gpus: vec![0]
            }]
        );
        assert!(why_waiting(Need::AnyGpus(4), &busy(&[]), 2).contains("has 2"));
    }
}
