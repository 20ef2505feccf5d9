/**
 * The layers of the house (docs/design.md §13), as rules that fail `bun run lint`.
 *
 *   services/<name>/   one binary each: imports shared/ only, never another service
 *   shared/            the code binaries share: imports no service, no tool, no test
 *   shared/dev/        tooling shared by tests, load tests and operator scripts (ports, the stack's
 *                      addresses, tokens, private servers, the event simulator): never by a service
 *   scripts/ loadtests/  the operator's commands and the benches: import shared/ (and their own files) only
 *   test/support/      used by test/ only
 *
 * A rule that bites names the reason in its comment; widen one only with a reason written here.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "A cycle means two modules are one module in two files: whoever reads one must read both. Split the shared part out.",
      from: {},
      to: { circular: true },
    },
    {
      name: "service-imports-another-service",
      severity: "error",
      comment:
        "Each service is its own binary and container (docs/design.md §7): importing another service's files couples two deploys. Move what both need to shared/.",
      from: { path: "^services/([^/]+)/" },
      to: { path: "^services/([^/]+)/", pathNot: "^services/$1/" },
    },
    {
      name: "service-imports-tools-or-tests",
      severity: "error",
      comment:
        "A binary ships alone (bun build --compile): code from loadtests/, scripts/, test/ or the dev tooling in shared/dev/ would ship with it, or break it where those files are absent.",
      from: { path: "^services/" },
      to: { path: "^(loadtests|scripts|test)/|^shared/dev/" },
    },
    {
      name: "shared-imports-a-service-or-tool",
      severity: "error",
      comment: "shared/ is the floor every binary stands on: if it imported a service (or a tool, or a test) the layers would go round in a circle.",
      from: { path: "^shared/" },
      to: { path: "^(services|loadtests|scripts|test)/" },
    },
    {
      name: "production-shared-imports-dev-tooling",
      severity: "error",
      comment: "shared/dev/ is for tests and tools; production code in shared/ must not pull it into a binary.",
      from: { path: "^shared/", pathNot: "^shared/dev/" },
      to: { path: "^shared/dev/" },
    },
    {
      name: "tools-import-shared-only",
      severity: "error",
      comment:
        "The operator's scripts and the load tests drive the system from outside, like a client: what they borrow from a service or a test belongs in shared/ (shared/dev/ for tooling). Exception: the in-process api benches below.",
      from: { path: "^(scripts|loadtests)/" },
      to: {
        path: "^(services|test)/|^(scripts|loadtests)/",
        pathNot: ["^$1/", "^services/api/(app|rate-limit|released-subscriber|allocate/sold-out-cache)\\.ts$"],
      },
    },
    {
      name: "only-in-process-benches-embed-the-api",
      severity: "error",
      comment:
        "Measuring the api's own per-request cost without HTTP (bench/api-overhead.ts), serving our app on another store (baselines/pg-server.ts) and comparing the local token buckets with a Redis-backed one (bench/front-door.ts) need the api's app in-process; nothing else in loadtests/ may import a service.",
      from: {
        path: "^loadtests/",
        pathNot: "^loadtests/(bench/api-overhead|baselines/pg-server|bench/front-door)\\.ts$",
      },
      to: { path: "^services/" },
    },
    {
      name: "test-support-is-for-tests",
      severity: "error",
      comment: "test/support holds what only the tests need; a tool that needs it shows the helper belongs in shared/dev/.",
      from: { pathNot: "^test/" },
      to: { path: "^test/support/" },
    },
    {
      name: "not-to-unresolvable",
      severity: "error",
      comment: "An import that does not resolve fails at run time in Bun, possibly only in the one branch that imports it.",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(node_modules|dist|loadtests/k6|loadtests/results)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { exportsFields: ["exports"], conditionNames: ["import", "require", "node", "default", "bun"] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
