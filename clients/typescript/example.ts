// A typed statekeeper client: `npm run generate` writes statekeeper.d.ts from openapi.yaml
// (openapi-typescript), openapi-fetch makes the calls. A change of the API that breaks these
// calls fails `npm run check` (tsc), which scripts/clients runs in CI.
import createClient from "openapi-fetch";
import type { paths } from "./statekeeper.d.ts";

export async function example(apiKey: string): Promise<void> {
  const client = createClient<paths>({
    baseUrl: "http://localhost:8080",
    headers: { Authorization: `Bearer ${apiKey}` },
  });

  // Cache: any JSON value with a TTL.
  const put = await client.PUT("/v1/cache/{namespace}/{key}", {
    params: { path: { namespace: "users", key: "ada" }, query: { ttl_seconds: 600 } },
    body: { name: "Ada" },
  });
  if (put.error) throw new Error(put.error.detail ?? put.error.title);

  // Exactly-once confirmation.
  const created = await client.POST("/v1/pending-actions", {
    body: { intent_name: "send_email", params: { to: "ada@example.com" }, ttl_seconds: 120 },
  });
  if (!created.data) throw new Error("create failed");
  const confirmed = await client.POST("/v1/pending-actions/{token}/confirm", {
    params: { path: { token: created.data.token } },
  });
  const status: string | undefined = confirmed.data?.action.status;
  // Free-form objects (entities, context, metadata, session data) read as ordinary records.
  const recipient: unknown = confirmed.data?.action.entities["to"];

  // A refusal's extension members are typed: how long a held lock stays held.
  const busy = await client.POST("/v1/locks/{name}", {
    params: { path: { name: "nightly-report" } },
    body: { ttl_ms: 30000 },
  });
  const waitMs: number | undefined = busy.error?.retry_after_ms;

  // A conversation's context, read field by field.
  const thread = await client.GET("/v1/agent-states/{thread_id}", {
    params: { path: { thread_id: "thread-1" } },
  });
  const topic: unknown = thread.data?.context["topic"];
  const source: unknown = thread.data?.metadata["source"];

  // A lock with a fencing token.
  const lock = await client.POST("/v1/locks/{name}", {
    params: { path: { name: "nightly-report" } },
    body: { ttl_ms: 30000, owner: "worker-7" },
  });
  const fence: number | undefined = lock.data?.fencing_token;

  // A budget reservation, then its commit.
  const held = await client.POST("/v1/budgets/{subject}/{metric}/reserve", {
    params: { path: { subject: "user-42", metric: "tokens" } },
    body: { amount: 4000, ttl_ms: 60000 },
  });
  if (held.error) {
    console.log("refused", held.error.code);
    return;
  }
  await client.POST("/v1/budgets/{subject}/{metric}/reservations/{reservation_id}/commit", {
    params: {
      path: { subject: "user-42", metric: "tokens", reservation_id: held.data.reservation_id },
    },
    body: { amount: 3120 },
  });

  // A message to a topic's subscribers.
  const published = await client.POST("/v1/topics/{topic}/messages", {
    params: { path: { topic: "orders" } },
    body: { data: { order: 42 }, event: "order.updated" },
  });
  console.log(status, recipient, waitMs, topic, source, fence, published.data?.id);
}
