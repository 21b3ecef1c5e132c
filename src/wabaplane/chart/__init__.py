"""The Helm chart's generated parts: values.yaml, values.schema.json and the CRDs it ships."""
