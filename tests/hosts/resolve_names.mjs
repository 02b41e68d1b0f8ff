// Preloaded into Node clients (`node --import` or NODE_OPTIONS=--import=...) that the host tests start:
// the test domain and its subdomains resolve to the guest's 127.0.2.N in that process only, as
// tests/harness/names.py does for Python, so no /etc/hosts line (and no root) is needed.
//   GATEWAY_RESOLVE="mcpgw.test=127.0.2.5"   (several: comma-separated)
// Node's net and tls connections (node:http, fetch and undici's Agent alike) look names up through
// the dns module's lookup at connect time, so replacing that one function is enough.
import dns from "node:dns";
import { syncBuiltinESMExports } from "node:module";

const names = (process.env.GATEWAY_RESOLVE ?? "")
  .split(",")
  .filter(Boolean)
  .map((pair) => pair.split("="));
const original = dns.lookup;

function addressFor(hostname) {
  const name = String(hostname).toLowerCase();
  for (const [suffix, address] of names) {
    if (name === suffix || name.endsWith(`.${suffix}`)) return address;
  }
  return undefined;
}

dns.lookup = function lookup(hostname, options, callback) {
  const address = addressFor(hostname);
  if (address === undefined) return original.call(this, hostname, options, callback);
  const done = typeof options === "function" ? options : callback;
  const all = typeof options === "object" && options !== null && options.all;
  const family = address.includes(":") ? 6 : 4;
  process.nextTick(() => (all ? done(null, [{ address, family }]) : done(null, address, family)));
  return {};
};
// `import { lookup } from "node:dns"` in code loaded later sees the replacement too
syncBuiltinESMExports();
