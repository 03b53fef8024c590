// Talks to the lorafeed broker the way a non-Python producer would (kafkajs).
// Usage: node kafka_interop.js BROKER topics            -> prints {topic: partitions} as JSON
//        node kafka_interop.js BROKER produce TOPIC KEY  -> sends stdin as one message's value
const { Kafka, logLevel } = require("kafkajs");

async function main() {
  const [broker, command, topic, key] = process.argv.slice(2);
  if (!broker || !command) {
    console.error("usage: kafka_interop.js BROKER topics | produce TOPIC KEY");
    process.exit(2);
  }
  const kafka = new Kafka({ clientId: "lorafeed-js", brokers: [broker], logLevel: logLevel.ERROR });
  if (command === "topics") {
    const admin = kafka.admin();
    await admin.connect();
    const metadata = await admin.fetchTopicMetadata();
    const counts = {};
    for (const t of metadata.topics) counts[t.name] = t.partitions.length;
    await admin.disconnect();
    process.stdout.write(JSON.stringify(counts) + "\n");
  } else if (command === "produce") {
    const value = require("fs").readFileSync(0);
    const producer = kafka.producer();
    await producer.connect();
    const [result] = await producer.send({ topic, acks: -1, messages: [{ key, value }] });
    await producer.disconnect();
    process.stdout.write(JSON.stringify({ partition: result.partition, offset: result.baseOffset }) + "\n");
  } else {
    console.error(`unknown command ${command}`);
    process.exit(2);
  }
}

main().catch((err) => {
  console.error(err && err.message ? err.message : String(err));
  process.exit(1);
});
