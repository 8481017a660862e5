using System.Globalization;
using System.Text;
using Forkbox.Hosting.Metrics;

namespace Forkbox.Edge;

/// <summary>The edge's /metrics, in the Prometheus text format.</summary>
public sealed class EdgeMetrics
{
    public Histogram CreateSeconds { get; } = new("forkbox_edge_create_seconds", "Time to route and forward a create, edge side");
    public Counter Failovers { get; } = new("forkbox_edge_failovers_total", "Creates retried on another host after a connection failure or 5xx");
    public Counter Limited { get; } = new("forkbox_edge_limited_total", "Requests refused with 429 by a tier limit");
    public Counter Unavailable { get; } = new("forkbox_edge_host_unavailable_total", "Calls answered 503 because the sandbox's host is down or gone");

    public string Render(IEnumerable<(string Region, int Hosts, int Running, int Maximum)> regions)
    {
        var sb = new StringBuilder();
        sb.Append("# HELP forkbox_edge_hosts Hosts in rotation\n# TYPE forkbox_edge_hosts gauge\n");
        foreach (var r in regions)
            sb.Append("forkbox_edge_hosts{region=\"").Append(r.Region).Append("\"} ").Append(r.Hosts.ToString(CultureInfo.InvariantCulture)).Append('\n');
        sb.Append("# HELP forkbox_edge_sandboxes_running Sandboxes running, as the hosts last announced\n# TYPE forkbox_edge_sandboxes_running gauge\n");
        foreach (var r in regions)
            sb.Append("forkbox_edge_sandboxes_running{region=\"").Append(r.Region).Append("\"} ").Append(r.Running.ToString(CultureInfo.InvariantCulture)).Append('\n');
        Failovers.Render(sb);
        Limited.Render(sb);
        Unavailable.Render(sb);
        CreateSeconds.Render(sb);
        return sb.ToString();
    }
}
