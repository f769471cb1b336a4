/**
 * Issue 16, tried as an attacker would: accounts from Object.prototype, replayed and downgraded
 * digests, password guessing, responses and requests from third connections, forged identities,
 * access lists, and the bounds on connections, dialogs and syncs. Virtual network and clock.
 */

import { describe, expect, it } from 'vitest';
import { Gateway } from '../../src/gateway/gateway.ts';
import { VirtualClock } from '../../src/net/clock.ts';
import type { StreamConnection } from '../../src/net/types.ts';
import { VirtualNetwork } from '../../src/net/virtual/network.ts';
import { encodeSdp } from '../../src/protocol/sdp.ts';
import { encodeSip, header, type SipRequest } from '../../src/protocol/sip/message.ts';
import { accountsFrom } from '../../src/signaling/accounts.ts';
import { SignalingClient, SipRequestError } from '../../src/signaling/client.ts';
import { SignalingServer, type SignalingServerInit } from '../../src/signaling/server.ts';
import { RecentBindings } from '../../src/traversal/recent-bindings.ts';
import { StunResponder } from '../../src/traversal/stun-responder.ts';

const SIP = { address: '198.18.0.10', port: 5060 };
const STUN = { address: '198.18.0.10', port: 3478 };
const PASSWORDS = {
  alice: 'alice-pass-1',
  bob: 'bob-pass-1',
  mallory: 'mallory-pass-1',
  camera: 'camera-pass-1',
  viewer: 'viewer-pass-1',
};
type User = keyof typeof PASSWORDS;

async function setup(init: Partial<SignalingServerInit> = {}, withBindings = false) {
  const clock = new VirtualClock();
  const bindings = withBindings ? new RecentBindings(clock) : undefined;
  const net = new VirtualNetwork({ clock, seed: 5 });
  const internet = net.addRouter('internet', { addresses: ['198.18.255.254'] });
  const serverHost = net.addHost('server', { addresses: ['198.18.0.10', '198.18.0.11'] });
  net.connect(serverHost, internet, { latencyMs: 5 });
  const hosts = new Map<string, ReturnType<typeof net.addHost>>();
  for (const [i, name] of ['alice', 'bob', 'mallory', 'camera', 'viewer', 'other'].entries()) {
    const host = net.addHost(name, { addresses: [`198.18.3.${i + 1}`] });
    net.connect(host, internet, { latencyMs: 5 });
    hosts.set(name, host);
  }
  const logs: string[] = [];
  const server = await SignalingServer.start(
    { network: serverHost, clock },
    {
      listen: { port: 5060 },
      realm: 'sc2c.lab',
      users: accountsFrom({
        ...PASSWORDS,
        camera: { password: PASSWORDS.camera, callers: ['viewer'] },
      }),
      log: (l) => logs.push(l),
      bindings,
      ...init,
    },
  );
  const host = (name: string) => hosts.get(name)!;
  const client = (from: string, user: string, password: string) =>
    clock.run(
      SignalingClient.connect(
        { network: host(from), clock },
        { server: SIP, domain: 'sc2c.lab', user, password, keepaliveMs: 600_000 },
      ),
    );
  const registered = async (user: User, from: string = user) => {
    const c = await client(from, user, PASSWORDS[user]);
    await clock.run(c.register());
    return c;
  };
  return {
    clock,
    net,
    server,
    serverHost,
    host,
    client,
    registered,
    logs,
    bindings,
    close: () => server.close(),
  };
}

/** Collects the requests a client receives, answering none of them. */
function inbox(client: SignalingClient): SipRequest[] {
  const got: SipRequest[] = [];
  client.on('request', (request) => got.push(request));
  return got;
}

async function refusal(clock: VirtualClock, promise: Promise<unknown>): Promise<number> {
  const error = await clock.run(promise.then(() => undefined).catch((e: unknown) => e));
  return error instanceof SipRequestError ? error.status : 0;
}

describe('accounts', () => {
  it('no name from Object.prototype registers, whatever password it is given', async () => {
    const s = await setup();
    const names = [...Object.getOwnPropertyNames(Object.prototype), '__proto__', 'prototype'];
    expect(names).toContain('constructor');
    for (const name of names) {
      const value = (Object.prototype as Record<string, unknown>)[name];
      for (const password of [String(value), 'function Object() { [native code] }', 'x']) {
        const c = await s.client('mallory', name, password);
        expect(await refusal(s.clock, c.register()), `${name} / ${password}`).toBe(403);
        c.close();
      }
    }
    expect(s.server.registrations()).toEqual([]);
    s.close();
  });
});

describe('digest', () => {
  it('an Authorization captured on one connection is refused on another, and on its own when replayed', async () => {
    const s = await setup();
    const alice = await s.client('alice', 'alice', PASSWORDS.alice);
    const sent: Uint8Array[] = [];
    const write = alice.connection.stream.write.bind(alice.connection.stream);
    alice.connection.stream.write = (data: Uint8Array) => {
      sent.push(data);
      write(data);
    };
    await s.clock.run(alice.register());
    const captured = sent.map((d) => new TextDecoder().decode(d)).find((t) => /Authorization:/.test(t))!;
    expect(captured).toMatch(/Authorization: Digest .*qop=auth/);
    // Replayed byte for byte from another address: the nonce was bound to alice's connection.
    const replay = async (stream: StreamConnection): Promise<string> => {
      let answer = '';
      stream.on('data', (d) => {
        answer += new TextDecoder().decode(d);
      });
      stream.write(new TextEncoder().encode(captured));
      await s.clock.advance(100);
      return answer;
    };
    const thief = await s.clock.run(s.host('mallory').connect(SIP));
    expect(await replay(thief)).toMatch(/^SIP\/2\.0 401 /);
    expect(s.server.registrations().map((r) => r.remote.address)).toEqual(['198.18.3.1']);
    // And on alice's own connection the same nonce count is refused.
    let again = '';
    alice.connection.stream.on('data', (d) => {
      again += new TextDecoder().decode(d);
    });
    write(new TextEncoder().encode(captured));
    await s.clock.advance(100);
    expect(again).toMatch(/^SIP\/2\.0 401 /);
    expect(s.logs.join('\n')).toMatch(/nonce count 00000001 replayed/);
    s.close();
  });

  it('refuses an MD5 answer to its SHA-256 challenge and an answer without qop', async () => {
    const s = await setup();
    const stream = await s.clock.run(s.host('alice').connect(SIP));
    let got = '';
    stream.on('data', (d) => {
      got += new TextDecoder().decode(d);
    });
    const send = async (authorization?: string) => {
      got = '';
      stream.write(
        encodeSip({
          kind: 'request',
          method: 'REGISTER',
          uri: 'sip:sc2c.lab',
          headers: [
            ['Via', 'SIP/2.0/TCP 198.18.3.1:5060;branch=z9hG4bKtest1'],
            ['From', '<sip:alice@sc2c.lab>;tag=1'],
            ['To', '<sip:alice@sc2c.lab>'],
            ['Call-ID', 'digest-test'],
            ['CSeq', '1 REGISTER'],
            ...(authorization ? ([['Authorization', authorization]] as [string, string][]) : []),
          ],
          body: '',
        }),
      );
      await s.clock.advance(50);
      return got;
    };
    const nonce = /nonce="([^"]+)"/.exec(await send())![1]!;
    const base = `Digest username="alice", realm="sc2c.lab", nonce="${nonce}", uri="sip:sc2c.lab", response="0123"`;
    expect(await send(`${base}, algorithm=MD5, qop=auth, nc=00000001, cnonce="a"`)).toMatch(
      /^SIP\/2\.0 401 /,
    );
    expect(await send(`${base}, algorithm=SHA-256, cnonce="a"`)).toMatch(/^SIP\/2\.0 401 /);
    expect(s.logs.join('\n')).toMatch(/algorithm MD5 refused/);
    expect(s.logs.join('\n')).toMatch(/qop=auth with nc required/);
    s.close();
  });

  it('throttles 30 wrong passwords from one source after the fifth; the right one from another source still works', async () => {
    const s = await setup();
    const statuses: number[] = [];
    let closedByServer = 0;
    for (let i = 0; i < 30; i++) {
      const c = await s.client('mallory', 'alice', `guess-${i}`);
      c.on('close', () => closedByServer++);
      statuses.push(await refusal(s.clock, c.register()));
      c.close();
    }
    expect(statuses.every((status) => status === 403)).toBe(true);
    expect(s.server.counters.authFailures).toBe(5);
    expect(s.server.counters.authThrottled).toBe(25);
    expect(s.logs.filter((l) => /throttling logins from 198\.18\.3\.3/.test(l))).toHaveLength(1);
    const alice = await s.registered('alice');
    expect(s.server.registrations().map((r) => r.user)).toEqual(['alice']);
    // After the window the guessing source may try again (and its right password works).
    await s.clock.advance(30_000);
    const later = await s.client('mallory', 'mallory', PASSWORDS.mallory);
    expect(await s.clock.run(later.register())).toBe(3600);
    alice.close();
    later.close();
    expect(closedByServer).toBeGreaterThan(0);
    s.close();
  });
});

describe('dialogs belong to their parties', () => {
  async function inviting(s: Awaited<ReturnType<typeof setup>>) {
    const alice = await s.registered('alice');
    const bob = await s.registered('bob');
    const mallory = await s.registered('mallory');
    const bobGot = inbox(bob);
    const answer = alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'call-1' });
    await s.clock.advance(50);
    expect(bobGot.map((r) => r.method)).toEqual(['INVITE']);
    return { alice, bob, mallory, bobGot, answer, invite: bobGot[0]! };
  }

  it('drops a 200 injected by a third connection and takes the callee own', async () => {
    const s = await setup();
    const { bob, mallory, answer, invite } = await inviting(s);
    const respond = (client: SignalingClient, sdp: string) =>
      client.connection.send({
        kind: 'response',
        status: 200,
        reason: 'OK',
        headers: invite.headers.filter(([n]) => ['Via', 'From', 'To', 'Call-ID', 'CSeq'].includes(n)),
        body: sdp,
      });
    respond(mallory, 'v=0 mallory');
    await s.clock.advance(50);
    expect(s.server.counters.foreignResponses).toBe(1);
    respond(bob, 'v=0 bob');
    const response = await s.clock.run(answer);
    expect(response.status).toBe(200);
    expect(response.body).toBe('v=0 bob');
    s.close();
  });

  it('refuses an in-dialog BYE from a third connection and a reused Call-ID', async () => {
    const s = await setup();
    const { mallory, bobGot } = await inviting(s);
    const bye = await s.clock.run(mallory.request('BYE', 'sip:bob@sc2c.lab', [], { callId: 'call-1' }));
    expect(bye.status).toBe(481);
    expect(s.server.counters.foreignRequests).toBe(1);
    const hijack = await s.clock.run(mallory.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'call-1' }));
    expect(hijack.status).toBe(403);
    expect(s.server.counters.duplicateCallIds).toBe(1);
    await s.clock.advance(50);
    expect(bobGot.map((r) => r.method)).toEqual(['INVITE']);
    s.close();
  });

  it("asserts the caller's identity: a forged From or P-Asserted-Identity never reaches the callee", async () => {
    const s = await setup();
    const mallory = await s.registered('mallory');
    const bob = await s.registered('bob');
    const bobGot = inbox(bob);
    mallory.connection.send({
      kind: 'request',
      method: 'INVITE',
      uri: 'sip:bob@sc2c.lab',
      headers: [
        ['Via', 'SIP/2.0/TCP 198.18.3.3:5060;branch=z9hG4bKforged'],
        ['From', '"Alice" <sip:alice@sc2c.lab>;tag=abc'],
        ['To', '<sip:bob@sc2c.lab>'],
        ['Call-ID', 'forged-1'],
        ['CSeq', '1 INVITE'],
        ['P-Asserted-Identity', '<sip:alice@sc2c.lab>'],
      ],
      body: '',
    });
    await s.clock.advance(50);
    expect(bobGot).toHaveLength(1);
    expect(header(bobGot[0]!, 'From')).toBe('<sip:mallory@sc2c.lab>;tag=abc');
    expect(bobGot[0]!.headers.filter(([n]) => n === 'P-Asserted-Identity')).toEqual([
      ['P-Asserted-Identity', '<sip:mallory@sc2c.lab>'],
    ]);
    s.close();
  });

  it('tells the caller at once when the callee disconnects before answering, and BYEs after the grace mid-call', async () => {
    const s = await setup({ limits: { partyGraceMs: 5000 } });
    const first = await inviting(s);
    first.bob.close();
    const response = await s.clock.run(first.answer);
    expect(response.status).toBe(480);
    // Mid-call: bob answers, alice ACKs, then alice's connection drops for good.
    const bob = await s.registered('bob');
    const bobGot = inbox(bob);
    bob.on('request', (request, respond) => {
      if (request.method === 'INVITE') respond(200);
      if (request.method === 'BYE') respond(200);
    });
    const answered = await s.clock.run(
      first.alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'call-2' }),
    );
    expect(answered.status).toBe(200);
    await s.clock.run(first.alice.request('ACK', 'sip:bob@sc2c.lab', [], { callId: 'call-2' }));
    first.alice.close();
    await s.clock.advance(4000);
    expect(bobGot.map((r) => r.method)).toEqual(['INVITE', 'ACK']);
    await s.clock.advance(2000);
    expect(bobGot.map((r) => r.method)).toEqual(['INVITE', 'ACK', 'BYE']);
    expect(header(bobGot[2]!, 'Reason')).toMatch(/alice's signaling connection dropped/);
    expect(s.server.calls()).toEqual([]);
    s.close();
  });

  it('keeps the dialog when the party comes back within the grace, so a later BYE still reaches the other', async () => {
    const s = await setup({ limits: { partyGraceMs: 5000 } });
    const alice = await s.registered('alice');
    const bob = await s.registered('bob');
    const bobGot = inbox(bob);
    bob.on('request', (request, respond) => {
      if (request.method !== 'ACK') respond(200);
    });
    await s.clock.run(alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'call-3' }));
    await s.clock.run(alice.request('ACK', 'sip:bob@sc2c.lab', [], { callId: 'call-3' }));
    alice.close();
    await s.clock.advance(1000);
    const back = await s.registered('alice');
    await s.clock.advance(10_000);
    const bye = await s.clock.run(back.request('BYE', 'sip:bob@sc2c.lab', [], { callId: 'call-3' }));
    expect(bye.status).toBe(200);
    expect(bobGot.map((r) => r.method)).toEqual(['INVITE', 'ACK', 'BYE']);
    s.close();
  });

  it('rate-limits sync requests per dialog', async () => {
    const s = await setup();
    const alice = await s.registered('alice');
    const bob = await s.registered('bob');
    bob.on('request', (request, respond) => {
      if (request.method !== 'ACK') respond(200);
    });
    await s.clock.run(alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'call-4' }));
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) {
      const response = await s.clock.run(
        alice.request('INFO', 'sip:bob@sc2c.lab', [['Content-Type', 'application/sc2c+json']], {
          callId: 'call-4',
          body: JSON.stringify({ type: 'sync' }),
        }),
      );
      statuses.push(response.status);
    }
    expect(statuses.filter((x) => x === 200).length).toBeLessThanOrEqual(5);
    expect(statuses.filter((x) => x === 503).length).toBeGreaterThanOrEqual(5);
    expect(s.server.counters.syncsLimited).toBe(statuses.filter((x) => x === 503).length);
    s.close();
  });

  it("a sync's pinned port reaches the other party's go only, rebuilt from its two checked fields", async () => {
    const s = await setup();
    const alice = await s.registered('alice');
    const bob = await s.registered('bob');
    const aliceGot = inbox(alice);
    const bobGot = inbox(bob);
    alice.on('request', (_request, respond) => respond(200));
    bob.on('request', (request, respond) => {
      if (request.method !== 'ACK') respond(200);
    });
    await s.clock.run(alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'call-pin' }));
    const sync = (pin: unknown) =>
      s.clock.run(
        alice.request('INFO', 'sip:bob@sc2c.lab', [['Content-Type', 'application/sc2c+json']], {
          callId: 'call-pin',
          body: JSON.stringify({ type: 'sync', pin }),
        }),
      );
    for (const bad of [
      { port: 0, window: 4 },
      { port: 4000, window: 33 },
      { port: '4000', window: 4 },
      7,
      null,
    ])
      expect((await sync(bad)).status).toBe(400);
    const birthdaySync = (birthday: unknown) =>
      s.clock.run(
        alice.request('INFO', 'sip:bob@sc2c.lab', [['Content-Type', 'application/sc2c+json']], {
          callId: 'call-pin',
          body: JSON.stringify({ type: 'sync', birthday }),
        }),
      );
    for (const bad of [0, 1025, 2.5, '256', null]) expect((await birthdaySync(bad)).status).toBe(400);
    const freshSync = (fresh: unknown) =>
      s.clock.run(
        alice.request('INFO', 'sip:bob@sc2c.lab', [['Content-Type', 'application/sc2c+json']], {
          callId: 'call-pin',
          body: JSON.stringify({ type: 'sync', fresh }),
        }),
      );
    for (const bad of [
      { port: 0 },
      { port: 70_000 },
      { port: 4000, rtcpPort: '4001' },
      { rtcpPort: 4001 },
      7,
    ])
      expect((await freshSync(bad)).status).toBe(400);
    expect((await sync({ port: 40_000, window: 8, extra: '<script>' })).status).toBe(200);
    await s.clock.advance(2000);
    // Past the sync rate limit's window, a fresh prediction goes the same way: rebuilt, callee only.
    expect((await freshSync({ port: 41_000, rtcpPort: 41_001, note: 'x' })).status).toBe(200);
    await s.clock.advance(2000);
    const goes = (got: typeof bobGot) =>
      got.filter((r) => r.method === 'INFO' && r.body.includes('"go"')).map((r) => JSON.parse(r.body));
    expect(goes(bobGot)).toEqual([
      { type: 'go', pin: { port: 40_000, window: 8 } },
      { type: 'go', fresh: { port: 41_000, rtcpPort: 41_001 } },
    ]);
    expect(goes(aliceGot)).toEqual([{ type: 'go' }, { type: 'go' }]);
    s.close();
  });

  it("a pin named by a STUN Binding takes that Binding's port, only from the sender's own address", async () => {
    const s = await setup({}, true);
    const alice = await s.registered('alice');
    const bob = await s.registered('bob');
    const bobGot = inbox(bob);
    alice.on('request', (_request, respond) => respond(200));
    bob.on('request', (request, respond) => {
      if (request.method !== 'ACK') respond(200);
    });
    // The REGISTER's 200 says this server reads such pins.
    expect(alice.observedPin).toBe(true);
    const goes = () =>
      bobGot.filter((r) => r.method === 'INFO' && r.body.includes('"go"')).map((r) => JSON.parse(r.body));
    const call = async (callId: string, stun: string, seen?: { address: string; port: number }) => {
      await s.clock.run(alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId }));
      const synced = s.clock.run(
        alice.request('INFO', 'sip:bob@sc2c.lab', [['Content-Type', 'application/sc2c+json']], {
          callId,
          body: JSON.stringify({ type: 'sync', pin: { stun, offset: -15, window: 8 } }),
        }),
      );
      // The Binding is answered a moment after the sync arrives (they left together).
      if (seen) s.clock.setTimeout(() => s.bindings!.record(stun, seen), 3);
      expect((await synced).status).toBe(200);
      await s.clock.advance(1000);
      return goes().at(-1);
    };
    const aliceAddress = '198.18.3.1';
    expect(await call('obs-1', 'a'.repeat(24), { address: aliceAddress, port: 40_015 })).toEqual({
      type: 'go',
      pin: { port: 40_000, window: 8 },
    });
    // Seen from another address (somebody else's Binding, guessed or replayed): no pin.
    expect(await call('obs-2', 'b'.repeat(24), { address: '198.18.3.3', port: 40_015 })).toEqual({
      type: 'go',
    });
    // Never seen: the server waits briefly, then sends the go without it.
    expect(await call('obs-3', 'c'.repeat(24))).toEqual({ type: 'go' });
    // A port the offset would push out of range.
    expect(await call('obs-4', 'd'.repeat(24), { address: aliceAddress, port: 10 })).toEqual({ type: 'go' });
    expect(s.server.counters).toMatchObject({ pinsObserved: 1, pinsUnresolved: 3 });
    // Malformed: refused before anything waits.
    for (const pin of [
      { stun: 'A'.repeat(24), offset: 0, window: 8 },
      { stun: 'a'.repeat(23), offset: 0, window: 8 },
      { stun: 'a'.repeat(24), offset: 70_000, window: 8 },
      { stun: 'a'.repeat(24), offset: 0, window: 8, port: 4000 },
    ]) {
      const response = await s.clock.run(
        alice.request('INFO', 'sip:bob@sc2c.lab', [['Content-Type', 'application/sc2c+json']], {
          callId: 'obs-1',
          body: JSON.stringify({ type: 'sync', pin }),
        }),
      );
      expect(response.status).toBe(400);
    }
    s.close();
  });

  it('a server without its own STUN ledger does not say it reads pins from Bindings', async () => {
    const s = await setup();
    expect((await s.registered('alice')).observedPin).toBe(false);
    s.close();
  });

  it('bounds dialogs per user (486) and in total (503), and drops unanswered ones after 32 s', async () => {
    const s = await setup({ dialogs: { maxPerUser: 3, maxDialogs: 5 } });
    const alice = await s.registered('alice');
    const viewer = await s.registered('viewer');
    inbox(await s.registered('bob'));
    const invite = (client: SignalingClient, callId: string) =>
      s.clock.run(
        Promise.race([
          client.request('INVITE', 'sip:bob@sc2c.lab', [], { callId }).then((r) => r.status),
          new Promise<number>((resolve) => s.clock.setTimeout(() => resolve(0), 500)),
        ]),
      );
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push(await invite(alice, `a-${i}`));
    // bob answers none: three wait (0 within the race), the fourth is refused.
    expect(statuses).toEqual([0, 0, 0, 486]);
    expect(s.server.calls()).toHaveLength(3);
    await s.clock.advance(33_000);
    expect(s.server.calls()).toHaveLength(0);
    expect(s.server.counters.dialogsExpired).toBe(3);
    expect(await invite(viewer, 'v-1')).toBe(0);
    s.close();
  });
});

describe('who may call whom', () => {
  it('the server refuses a caller not on the callee list with 403; the callee sees nothing', async () => {
    const s = await setup();
    const camera = await s.registered('camera');
    const got = inbox(camera);
    const alice = await s.registered('alice');
    const refused = await s.clock.run(alice.request('INVITE', 'sip:camera@sc2c.lab', [], { callId: 'c-1' }));
    expect(refused.status).toBe(403);
    expect(s.server.counters.forbiddenCalls).toBe(1);
    const viewer = await s.registered('viewer');
    void viewer.request('INVITE', 'sip:camera@sc2c.lab', [], { callId: 'c-2' }).catch(() => {});
    await s.clock.advance(100);
    expect(got.map((r) => header(r, 'Call-ID'))).toEqual(['c-2']);
    s.close();
  });

  it('the gateway refuses callers off its own list and beyond its call cap before setting anything up', async () => {
    const s = await setup();
    const stun = await StunResponder.start(s.serverHost, {
      primary: STUN,
      alternate: { address: '198.18.0.11', port: 3479 },
    });
    const gateway = await s.clock.run(
      Gateway.start(
        { network: s.host('bob'), clock: s.clock },
        {
          sip: { server: SIP, domain: 'sc2c.lab', user: 'bob', password: PASSWORDS.bob },
          stunServer: STUN,
          stunRtoMs: 100,
          allowedCallers: ['viewer'],
          maxCalls: 1,
        },
      ),
    );
    const outcomes: { peer: string; ok: boolean; reason?: string }[] = [];
    gateway.on('call', (o) => outcomes.push(o));
    let prepared = 0;
    const prepare = gateway.prepare.bind(gateway);
    gateway.prepare = (...args) => {
      prepared++;
      return prepare(...args);
    };
    const alice = await s.registered('alice');
    const refused = await s.clock.run(alice.request('INVITE', 'sip:bob@sc2c.lab', [], { callId: 'g-1' }));
    expect(refused.status).toBe(403);
    expect(outcomes[0]).toMatchObject({
      peer: 'alice',
      ok: false,
      reason: "alice is not on this gateway's access list",
    });
    expect(prepared).toBe(0);
    // The viewer gets in; a second call while the first lasts is busy, before any set-up.
    const viewer = await s.registered('viewer');
    const offer = encodeSdp(
      {
        publicEndpoint: { address: '198.18.3.5', port: 20_000 },
        ufrag: 'view',
        pwd: 'v'.repeat(24),
        nat: 'none',
        mode: 'stun',
        portSource: 'exact',
        rtcpMux: true,
      },
      1,
    );
    const sdp = [['Content-Type', 'application/sdp']] as [string, string][];
    const first = await s.clock.run(
      viewer.request('INVITE', 'sip:bob@sc2c.lab', sdp, { callId: 'g-2', body: offer }),
    );
    expect(first.status).toBe(200);
    expect(prepared).toBe(1);
    const second = await s.clock.run(
      viewer.request('INVITE', 'sip:bob@sc2c.lab', sdp, { callId: 'g-3', body: offer }),
    );
    expect(second.status).toBe(486);
    expect(prepared).toBe(1);
    expect(outcomes.at(-1)).toMatchObject({ peer: 'viewer', ok: false, reason: 'busy: 1 calls already' });
    gateway.close();
    stun.close();
    s.close();
  });
});

describe('bounds on connections', () => {
  it('closes 2000 idle unregistered connections within the idle timeout', async () => {
    const s = await setup({ limits: { maxConnectionsPerSource: 5000 } });
    const streams: StreamConnection[] = [];
    streams.push(
      ...(await s.clock.run(Promise.all(Array.from({ length: 2000 }, () => s.host('mallory').connect(SIP))))),
    );
    await s.clock.advance(100);
    expect(s.server.connectionCount).toBe(2000);
    await s.clock.advance(10_000);
    expect(s.server.connectionCount).toBe(0);
    expect(s.server.counters.idleClosed).toBe(2000);
    expect(streams.every((c) => c.closed)).toBe(true);
    // A registered connection stays.
    const alice = await s.registered('alice');
    await s.clock.advance(20_000);
    expect(s.server.connectionCount).toBe(1);
    alice.close();
    s.close();
  });

  it('caps connections per source, and closes a sender trickling one byte a second', async () => {
    const s = await setup({ limits: { maxConnectionsPerSource: 3 }, rttRefreshMs: 600_000 });
    const streams: StreamConnection[] = [];
    for (let i = 0; i < 5; i++) streams.push(await s.clock.run(s.host('mallory').connect(SIP)));
    await s.clock.advance(100);
    expect(s.server.connectionCount).toBe(3);
    expect(s.server.counters.connectionsRefused).toBe(2);
    const alice = await s.registered('alice');
    await s.clock.advance(1000); // the server's round-trip probes are answered before the trickle
    const slow = new TextEncoder().encode(
      'OPTIONS sip:sc2c.lab SIP/2.0\r\nVia: SIP/2.0/TCP x;branch=z9hG4bKs\r\n',
    );
    for (let i = 0; i < 15 && !alice.connection.closed; i++) {
      alice.connection.stream.write(slow.subarray(i, i + 1));
      await s.clock.advance(1000);
    }
    expect(alice.connection.closed).toBe(true);
    expect(s.server.counters.messageTimeouts).toBe(1);
    s.close();
  });
});
