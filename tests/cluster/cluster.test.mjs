// A mixed cluster of three nodes (kinds from CLUSTER_KINDS, default switchyard,switchyard,node)
// sharing one redis-server through the classic Redis adapter protocol: the operation matrix of
// lib/suite.mjs (every operation initiated once from the first node of each kind present, checked
// on the clients of all three nodes).

import { operationSuite } from "./lib/suite.mjs";

operationSuite({ title: "mixed cluster", tag: "cl" });
