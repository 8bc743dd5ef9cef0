"""Produces N records to a topic on a Kafka broker and consumes them all back, with kafka-python
used unmodified. The Kafka framework's integration test runs it against the endpoint of a
tansu broker that the framework reports, for a topic added with `agora-kafka topic add`.

Usage: kafka_produce_consume.py BOOTSTRAP TOPIC COUNT TAG

Prints "produced N" and "consumed N" and exits 0 when every record of this run (its values
carry TAG) came back; records of earlier runs on the same topic are skipped.
"""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer

bootstrap, topic, count, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

producer = KafkaProducer(bootstrap_servers=[bootstrap], acks=1, linger_ms=5)
futures = [producer.send(topic, key=str(i).encode(), value=("%s-%d" % (tag, i)).encode())
           for i in range(count)]
for f in futures:
    f.get(timeout=60)
producer.flush()
producer.close()
print("produced %d" % count, flush=True)

consumer = KafkaConsumer(topic, bootstrap_servers=[bootstrap], auto_offset_reset="earliest",
                         enable_auto_commit=False, group_id=None)
seen = set()
# A safety net against a hang, not a timing assertion: every record is normally back in seconds.
deadline = time.time() + 120
while len(seen) < count and time.time() < deadline:
    for records in consumer.poll(timeout_ms=1000).values():
        for r in records:
            value = r.value.decode()
            if value.startswith(tag + "-"):
                seen.add(value)
consumer.close()
print("consumed %d" % len(seen), flush=True)
sys.exit(0 if len(seen) == count else 1)
