using System.Text.Json;
using System.Text.Json.Serialization;
using Forkbox.Core;
using Forkbox.Core.Wire;
using Microsoft.Data.Sqlite;

namespace Forkbox.Host.Sandboxes;

/// <summary>
/// What survives a restart of hostd about one sandbox: its identity, owner, name, state, limits,
/// metadata, parent, and for one that was hibernated, where its saved state lies. Live resources
/// (processes, cgroup, uid slot) are never recorded: they do not survive a restart.
/// </summary>
public sealed record SandboxRecord
{
    public required string Id { get; init; }
    public required string Owner { get; init; }
    public string? Name { get; init; }
    public required string Template { get; init; }
    public required string State { get; init; }
    public bool Persistent { get; init; }
    public required int MemoryMb { get; init; }
    public required double Cpus { get; init; }
    public required int Pids { get; init; }
    public required int DiskMb { get; init; }
    public Dictionary<string, string> Metadata { get; init; } = new();
    public string? ParentId { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
    public DateTimeOffset? ExpiresAt { get; init; }
    public double? IdleTimeoutS { get; init; }
    public double? HibernateAfterS { get; init; }
    public DateTimeOffset? LastActiveAt { get; init; }
    public string? LostReason { get; init; }

    /// <summary>The generation directory (under DATA/sandboxes/.spaces/ID) of the last hibernated state, if any.</summary>
    public string? Image { get; init; }
    public long? ImageBytes { get; init; }
    /// <summary>The host uid that was root in the sandbox when the image was written (its files are owned from there).</summary>
    public long? ImageUidBase { get; init; }
    public DateTimeOffset? HibernatedAt { get; init; }
    /// <summary>What the hibernate could not save, reported again by the resume that restores it.</summary>
    public Dictionary<string, string>? NotSaved { get; init; }
    /// <summary>"egress" when the sandbox has a link of its own (a resume gives it a fresh one); null for "none".</summary>
    public string? Network { get; init; }
    public NetworkPolicy? NetworkPolicy { get; init; }

    public SandboxInfo ToInfo() => new()
    {
        Id = Id,
        State = State,
        Template = Template,
        CreatedAt = CreatedAt,
        ExpiresAt = ExpiresAt,
        Metadata = Metadata,
        Limits = new LimitsInfo(MemoryMb, Cpus, Pids, DiskMb),
        Persistent = Persistent ? true : null,
        Name = Name,
        IdleTimeoutS = IdleTimeoutS,
        HibernateAfterS = HibernateAfterS,
        LastActiveAt = LastActiveAt,
        LostReason = LostReason,
        HibernatedBytes = ImageBytes,
        ForkedFrom = ParentId,
        Network = Network ?? NetworkModes.None,
        NetworkPolicy = NetworkPolicy,
    };
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SandboxRecord))]
internal sealed partial class StoreJson : JsonSerializerContext;

/// <summary>
/// The sandbox records in an SQLite database in the data directory (WAL mode). Every write is
/// committed before it returns, so a record survives a crash of hostd (kill -9) once the call
/// that made it has answered; a <c>durable</c> write (a hibernate's acknowledgement) is also
/// fsynced, to survive a crash of the machine. A commit is some 30 µs here: the statements are
/// prepared once and run on the caller's thread, under one lock.
/// Names are unique per owner: the database refuses a second record with the same pair.
/// </summary>
public sealed class SandboxStore : IDisposable
{
    private readonly SqliteConnection _db;
    private readonly Lock _lock = new();
    private readonly SqliteCommand _upsert;
    private readonly SqliteCommand _delete;

    public SandboxStore(string path)
    {
        _db = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        _db.Open();
        Execute("PRAGMA journal_mode=WAL");
        Execute("PRAGMA synchronous=NORMAL");
        Execute("""
            CREATE TABLE IF NOT EXISTS sandboxes (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                name TEXT,
                state TEXT NOT NULL,
                record TEXT NOT NULL)
            """);
        Execute("CREATE UNIQUE INDEX IF NOT EXISTS sandboxes_name ON sandboxes(owner, name) WHERE name IS NOT NULL");
        _upsert = _db.CreateCommand();
        _upsert.CommandText = "INSERT OR REPLACE INTO sandboxes (id, owner, name, state, record) VALUES ($id, $owner, $name, $state, $record)";
        foreach (var p in new[] { "$id", "$owner", "$name", "$state", "$record" }) _upsert.Parameters.Add(p, SqliteType.Text);
        _upsert.Prepare();
        _delete = _db.CreateCommand();
        _delete.CommandText = "DELETE FROM sandboxes WHERE id = $id";
        _delete.Parameters.Add("$id", SqliteType.Text);
        _delete.Prepare();
    }

    /// <summary>Inserts or replaces the record with this id.</summary>
    public void Save(SandboxRecord r, bool durable = false)
    {
        var json = JsonSerializer.Serialize(r, StoreJson.Default.SandboxRecord);
        lock (_lock)
        {
            if (durable) Execute("PRAGMA synchronous=FULL");
            try
            {
                _upsert.Parameters["$id"].Value = r.Id;
                _upsert.Parameters["$owner"].Value = r.Owner;
                _upsert.Parameters["$name"].Value = (object?)r.Name ?? DBNull.Value;
                _upsert.Parameters["$state"].Value = r.State;
                _upsert.Parameters["$record"].Value = json;
                _upsert.ExecuteNonQuery();
            }
            finally
            {
                if (durable) Execute("PRAGMA synchronous=NORMAL");
            }
        }
    }

    public void Delete(string id)
    {
        lock (_lock)
        {
            _delete.Parameters["$id"].Value = id;
            _delete.ExecuteNonQuery();
        }
    }

    public List<SandboxRecord> LoadAll()
    {
        lock (_lock)
        {
            using var cmd = _db.CreateCommand();
            cmd.CommandText = "SELECT record FROM sandboxes";
            using var reader = cmd.ExecuteReader();
            var all = new List<SandboxRecord>();
            while (reader.Read())
                all.Add(JsonSerializer.Deserialize(reader.GetString(0), StoreJson.Default.SandboxRecord)!);
            return all;
        }
    }

    private void Execute(string sql)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _upsert.Dispose();
            _delete.Dispose();
            _db.Dispose();
        }
    }
}
