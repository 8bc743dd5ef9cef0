//! `agora-kafka`: the Kafka framework's single binary (scheduler, executor and the
//! Kafka-on-Mesos CLI).

fn main() {}
