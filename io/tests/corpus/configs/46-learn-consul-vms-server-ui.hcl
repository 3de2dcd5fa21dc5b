
# -----------------------------+
# agent-server-specific-ui.hcl |
# -----------------------------+

## UI configuration (1.9+)
ui_config {
  enabled = true

  dashboard_url_templates {
    # service = "http://10.5.0.8:3000/d/hashicups/hashicups?orgId=1&var-service={{Service.Name}}"
    service = "http://10.5.0.8:3000/d/hashicups/hashicups?orgId=1&var-service={{Service.Name}}"
  }

  metrics_provider = "prometheus"

  metrics_proxy {
    base_url = "http://10.5.0.9:9009/prometheus"
    path_allowlist = ["/api/v1/query_range", "/api/v1/query", "/prometheus/api/v1/query_range", "/prometheus/api/v1/query"]
  }
}
