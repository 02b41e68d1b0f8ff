// A command-line MCP client built on the official TypeScript SDK (@modelcontextprotocol/sdk), as a
// developer would write one: its own OAuthClientProvider, dynamic registration, a loopback callback
// server, and StreamableHTTPClientTransport with `authProvider`. tests/hosts/test_every_client_kind.py
// runs it against a converged gateway; the login robot plays the person's browser.
//
//   node --import ./tests/hosts/resolve_names.mjs tests/hosts/ts_sdk_client.mjs PLAN_JSON
//   PLAN_JSON: {"use": [{"url": "https://time.mcpgw.test/mcp", "tool": "get_current_time",
//                        "arguments": {"timezone": "UTC"}}, ...],
//               "refused": ["https://other.mcpgw.test/mcp", ...]}
//
// It speaks JSON lines on stdout: {"authorize": URL, "server": URL} when a person must open URL (as a
// CLI prints it), then one {"server", "tools", "call", "client_id", ...} per service used and one
// {"server", "refused", ...} per service it was refused on. Exit status 0 when every step went as
// the plan says, 1 otherwise (the reason on stderr).
import http from "node:http";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const say = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

/** The loopback server a CLI client opens for the authorization redirect; one code or error per wait. */
class Callback {
  constructor() {
    this.waiting = null;
    this.server = http.createServer((request, response) => {
      const query = new URL(request.url, "http://127.0.0.1").searchParams;
      if (new URL(request.url, "http://127.0.0.1").pathname !== "/callback") {
        response.writeHead(404).end();
        return;
      }
      const outcome = Object.fromEntries(query);
      response.writeHead(outcome.code ? 200 : 400, { "content-type": "text/plain" });
      response.end(outcome.code ? "Signed in: you can close this window." : `Sign-in failed: ${outcome.error}`);
      this.waiting?.(outcome);
      this.waiting = null;
    });
  }

  async listen() {
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${this.server.address().port}/callback`;
  }

  next(timeoutMs = 60_000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no redirect came back to the callback")), timeoutMs);
      this.waiting = (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      };
    });
  }
}

/** Keeps what a client keeps (in memory here: one run). */
class MemoryProvider {
  constructor(server, redirectUrl) {
    this.server = server;
    this.redirectUrl = redirectUrl;
    this.client = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.expectedState = undefined;
  }

  get clientMetadata() {
    return {
      client_name: "TypeScript SDK host test",
      redirect_uris: [this.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }

  state() {
    this.expectedState = crypto.randomUUID();
    return this.expectedState;
  }

  clientInformation() {
    return this.client;
  }

  saveClientInformation(information) {
    this.client = information;
  }

  tokens() {
    return this.saved;
  }

  saveTokens(tokens) {
    this.saved = tokens;
  }

  redirectToAuthorization(url) {
    say({ authorize: url.toString(), server: this.server });
  }

  saveCodeVerifier(verifier) {
    this.verifier = verifier;
  }

  codeVerifier() {
    return this.verifier;
  }
}

/** Connect, logging in through the browser when the server asks for it (the SDK's documented pattern). */
async function connect(server, callback, redirectUrl) {
  const provider = new MemoryProvider(server, redirectUrl);
  const open = async () => {
    const client = new Client({ name: "ts-sdk-host-test", version: "1.0.0" });
    const transport = new StreamableHTTPClientTransport(new URL(server), { authProvider: provider });
    await client.connect(transport);
    return { client, transport };
  };
  try {
    return { ...(await open()), provider };
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
  }
  const outcome = await callback.next();
  if (!outcome.code) return { refused: outcome, provider };
  if (outcome.state !== provider.expectedState) throw new Error(`state mismatch on ${server}`);
  // finishAuth exchanges the code (with the PKCE verifier); a new transport then carries the token
  await new StreamableHTTPClientTransport(new URL(server), { authProvider: provider }).finishAuth(outcome.code);
  return { ...(await open()), provider };
}

/** End the session (DELETE), as a well-behaved client does: the gateway counts a user's open sessions. */
async function end(client, transport) {
  await transport.terminateSession();
  await client.close();
}

async function main() {
  const plan = JSON.parse(process.argv[2]);
  const callback = new Callback();
  const redirectUrl = await callback.listen();
  let ok = true;
  try {
    for (const step of plan.use ?? []) {
      const { client, transport, provider, refused } = await connect(step.url, callback, redirectUrl);
      if (refused) {
        ok = false;
        say({ server: step.url, refused: refused.error, description: refused.error_description });
        continue;
      }
      const { tools } = await client.listTools();
      const call = await client.callTool({ name: step.tool, arguments: step.arguments ?? {} });
      say({
        server: step.url,
        tools: tools.map((tool) => tool.name),
        call: { isError: call.isError ?? false, content: call.content },
        client_id: provider.client?.client_id,
        access_token: provider.saved?.access_token,
      });
      await end(client, transport);
    }
    for (const server of plan.refused ?? []) {
      const { client, transport, refused } = await connect(server, callback, redirectUrl);
      if (client) {
        ok = false;
        say({ server, refused: null });
        await end(client, transport);
        continue;
      }
      say({ server, refused: refused.error, description: refused.error_description });
    }
  } finally {
    callback.server.close();
  }
  return ok;
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (error) => {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exit(1);
  },
);
