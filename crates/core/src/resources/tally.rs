//! A running sum of many [`Resources`] from which any one of them can be taken back again,
//! always equal to summing the ones still in it afresh.
//!
//! The master shows each framework's allocated resources, the sum of its unfinished tasks'
//! resources. Summing a thousand tasks again for every snapshot of a busy master was most of
//! a framework view's cost, so the task table keeps this tally as tasks come and go. A plain
//! `Resources` cannot do it: ranges and sets add by union (two tasks holding port 31000 on two
//! agents sum to one port 31000, and taking one back would remove the port the other still
//! holds), and indivisible entries (persistent volumes) are removed only whole. So only the
//! divisible scalars are summed as they come (fixed-point: adding and subtracting are exact);
//! every other entry is counted by value and merged into the sum when it is asked for.

use std::collections::HashMap;

use super::{Resource, Resources, Value};

#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// The divisible scalar entries of everything added and not taken back, summed.
    scalars: Resources,
    /// Every other entry added and not taken back, with how many times it was added.
    others: HashMap<Resource, usize>,
}

impl Tally {
    fn summed_as_it_comes(resource: &Resource) -> bool {
        matches!(resource.value, Value::Scalar(_)) && !resource.is_indivisible()
    }

    /// Adds `resources` to the tally.
    pub fn add(&mut self, resources: &Resources) {
        for resource in resources {
            if Self::summed_as_it_comes(resource) {
                self.scalars.insert(resource);
            } else if !resource.value.is_empty() {
                *self.others.entry(resource.clone()).or_default() += 1;
            }
        }
    }

    /// Takes back `resources`, which an earlier [`Tally::add`] must have added.
    pub fn take_back(&mut self, resources: &Resources) {
        for resource in resources {
            if Self::summed_as_it_comes(resource) {
                self.scalars.remove_one(resource);
            } else if let Some(count) = self.others.get_mut(resource) {
                *count -= 1;
                if *count == 0 {
                    self.others.remove(resource);
                }
            }
        }
    }

    /// The sum of everything added and not taken back: what `+=` over those would give.
    pub fn sum(&self) -> Resources {
        let mut sum = self.scalars.clone();
        for (resource, &count) in &self.others {
            for _ in 0..count {
                sum.insert(resource);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(text: &str) -> Resources {
        Resources::parse(text).expect("test resources are valid")
    }

    fn sum_of(all: &[Resources]) -> Resources {
        let mut sum = Resources::new();
        for resources in all {
            sum += resources;
        }
        sum
    }

    #[test]
    fn taking_back_leaves_what_a_fresh_sum_of_the_rest_gives() {
        let held = [
            r("cpus:0.1;mem:32;ports:[31000-31000]"),
            r("cpus:0.2;mem:64;ports:[31000-31001]"),
            r("cpus(eng):1;disks:{sda,sdb}"),
            r("cpus:0.1;mem:32;ports:[31000-31000]"),
            r("cpus:0.3;disks:{sdb}"),
        ];
        let mut tally = Tally::default();
        for resources in &held {
            tally.add(resources);
        }
        assert_eq!(tally.sum(), sum_of(&held));
        // Take each back in turn, in an order unlike the one they came in.
        let mut left: Vec<usize> = (0..held.len()).collect();
        for i in [3, 0, 4, 1, 2] {
            tally.take_back(&held[i]);
            left.retain(|&j| j != i);
            let rest: Vec<Resources> = left.iter().map(|&j| held[j].clone()).collect();
            assert_eq!(tally.sum(), sum_of(&rest), "after taking back {i}");
        }
        assert!(tally.sum().is_empty());
    }

    #[test]
    fn a_shared_port_stays_while_one_holder_remains() {
        let a = r("ports:[31000-31000]");
        let mut tally = Tally::default();
        tally.add(&a);
        tally.add(&a);
        tally.take_back(&a);
        assert_eq!(tally.sum(), a);
    }
}
