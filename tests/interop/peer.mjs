// A js-libp2p peer that meets a goop2 peer: it dials the address it is given, completes Identify,
// waits for the goop2 peer's presence on GossipSub and checks its signature (RFC 8785 canonical
// JSON, Ed25519 by the key inside `peerId`), publishes its own signed presence, and fetches a site
// file over /goop/site/1.0.0. Each step prints one JSON line; any failure exits non-zero.
//
// usage: node peer.mjs <multiaddr of the goop2 peer> <presence topic> <site path>

// libp2p 3.x uses Promise.withResolvers, which Node 20 lacks.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new this((yes, no) => {
      resolve = yes;
      reject = no;
    });
    return { promise, resolve, reject };
  };
}

const { createLibp2p } = await import("libp2p");
const { tcp } = await import("@libp2p/tcp");
const { noise } = await import("@chainsafe/libp2p-noise");
const { yamux } = await import("@chainsafe/libp2p-yamux");
const { identify } = await import("@libp2p/identify");
const { gossipsub } = await import("@libp2p/gossipsub");
const { generateKeyPair } = await import("@libp2p/crypto/keys");
const { peerIdFromString } = await import("@libp2p/peer-id");
const { multiaddr } = await import("@multiformats/multiaddr");
const { createHash } = await import("node:crypto");

const [target, topic, sitePath] = process.argv.slice(2);
if (!target || !topic || !sitePath) {
  console.error("usage: node peer.mjs <multiaddr> <topic> <site path>");
  process.exit(2);
}
const say = (event) => console.log(JSON.stringify(event));
const deadline = setTimeout(() => {
  console.error("interop: no result within 60 s");
  process.exit(3);
}, 60_000);

/** RFC 8785: keys sorted by UTF-16 code units, JSON.stringify's numbers and strings. */
function canonical(value) {
  if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
  if (value !== null && typeof value === "object") {
    return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
  }
  return JSON.stringify(value);
}

function unsignedBytes(presence) {
  const { sig: _sig, verified: _verified, signed: _signed, ...rest } = presence;
  return new TextEncoder().encode(canonical(rest));
}

async function verifyPresence(presence) {
  const key = peerIdFromString(presence.peerId).publicKey;
  if (!key || !presence.sig) return false;
  return await key.verify(unsignedBytes(presence), Buffer.from(presence.sig, "base64"));
}

const privateKey = await generateKeyPair("Ed25519");
const node = await createLibp2p({
  start: false,
  privateKey,
  addresses: { listen: ["/ip4/127.0.0.1/tcp/0"] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false }),
  },
});
// js-libp2p's own Identify protocol version: a goop2 peer serves any libp2p client.
await node.start();

const remote = multiaddr(target);
const remoteId = remote.getComponents().find((c) => c.name === "p2p")?.value;

const identified = Promise.withResolvers();
node.addEventListener("peer:identify", (event) => {
  if (event.detail.peerId.toString() === remoteId) identified.resolve(event.detail);
});
const presenceSeen = Promise.withResolvers();
node.services.pubsub.subscribe(topic);
node.services.pubsub.addEventListener("message", async (event) => {
  const message = event.detail;
  if (message.topic !== topic) return;
  let presence;
  try {
    presence = JSON.parse(new TextDecoder().decode(message.data));
  } catch {
    return;
  }
  if (presence.peerId !== remoteId) return;
  presenceSeen.resolve({ presence, verified: await verifyPresence(presence) });
});

await node.dial(remote);
const info = await identified.promise;
say({
  event: "identify",
  agentVersion: info.agentVersion,
  protocolVersion: info.protocolVersion,
  protocols: info.protocols,
});

const { presence, verified } = await presenceSeen.promise;
say({ event: "presence", peerId: presence.peerId, type: presence.type, content: presence.content, verified });

// Our own presence, signed the same way, for the goop2 peer to believe.
const mine = {
  type: "online",
  peerId: node.peerId.toString(),
  content: "js-libp2p peer",
  addrs: node.getMultiaddrs().map((a) => a.toString()),
  ts: Date.now(),
};
mine.sig = Buffer.from(await privateKey.sign(unsignedBytes(mine))).toString("base64");
const published = Promise.withResolvers();
const publishOnce = async () => {
  try {
    const result = await node.services.pubsub.publish(topic, new TextEncoder().encode(JSON.stringify(mine)));
    if (result.recipients.length > 0) published.resolve(result.recipients.length);
  } catch {
    // Not in the mesh yet; the next round tries again.
  }
};
const repeat = setInterval(publishOnce, 500);
await publishOnce();
say({ event: "published", peerId: mine.peerId, recipients: await published.promise });
clearInterval(repeat);

const stream = await node.dialProtocol(remote, "/goop/site/1.0.0");
stream.send(new TextEncoder().encode(`GET /${sitePath}\n`));
const chunks = [];
for await (const chunk of stream) chunks.push(chunk.subarray ? chunk.subarray() : chunk);
const reply = Buffer.concat(chunks);
const newline = reply.indexOf(0x0a);
const header = reply.subarray(0, newline).toString("utf8");
const body = reply.subarray(newline + 1);
const [status, mime, size] = header.split(" ");
say({
  event: "site",
  status,
  mime,
  size: Number(size),
  received: body.length,
  sha256: createHash("sha256").update(body).digest("hex"),
});

clearTimeout(deadline);
await node.stop();
process.exit(0);
