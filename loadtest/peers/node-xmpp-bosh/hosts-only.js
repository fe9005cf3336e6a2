// Preloaded into node-xmpp-bosh (`node --require`) for the benchmarks:
// names are resolved from the hosts file only, never by the system resolver.
//
// node-xmpp-bosh finds its XMPP server through the `dns-srv` package, which
// calls dns.resolveSrv('_xmpp-client._tcp.<domain>') (a DNS query) and then
// dns.lookup(<domain>). Here every dns.resolve* fails at once with ENOTFOUND,
// as for a domain without SRV records, and dns.lookup answers from
// /etc/hosts (IPv4 first, as the bench Prosody listens on 127.0.0.1), so
// `localhost` goes to 127.0.0.1:5222 and nothing leaves the machine.
'use strict';

const dns = require('dns');
const fs = require('fs');
const net = require('net');

function notFound(name) {
  const err = new Error('hosts-only: no DNS for ' + name);
  err.code = dns.NOTFOUND || 'ENOTFOUND';
  err.hostname = name;
  return err;
}

function hostsEntries(name) {
  let text = '';
  try {
    text = fs.readFileSync('/etc/hosts', 'utf8');
  } catch (e) {
    text = '';
  }
  const found = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const [address, ...names] = line.split(/\s+/);
    if (names.some((n) => n.toLowerCase() === name.toLowerCase())) {
      found.push({ address, family: net.isIPv6(address) ? 6 : 4 });
    }
  }
  if (name.toLowerCase() === 'localhost' && !found.some((f) => f.family === 4)) {
    found.push({ address: '127.0.0.1', family: 4 });
  }
  return found.sort((a, b) => a.family - b.family);
}

dns.lookup = function lookup(name, options, callback) {
  if (typeof options === 'function') {
    callback = options;
    options = {};
  }
  if (typeof options === 'number') options = { family: options };
  options = options || {};
  let entries = net.isIP(name) ? [{ address: name, family: net.isIP(name) }] : hostsEntries(String(name));
  if (options.family === 4 || options.family === 6) {
    entries = entries.filter((e) => e.family === options.family);
  }
  process.nextTick(() => {
    if (entries.length === 0) return callback(notFound(name));
    if (options.all) return callback(null, entries);
    return callback(null, entries[0].address, entries[0].family);
  });
};

for (const method of Object.keys(dns)) {
  if (method.startsWith('resolve') && typeof dns[method] === 'function') {
    dns[method] = function resolveNothing(name, ...rest) {
      const callback = rest[rest.length - 1];
      process.nextTick(() => callback(notFound(name)));
    };
  }
}
dns.Resolver = function NoResolver() {
  throw new Error('hosts-only: no DNS resolver in the benchmarks');
};
