using System.Collections.Concurrent;
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
    };
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SandboxRecord))]
internal sealed partial class StoreJson : JsonSerializerContext;

/// <summary>
/// The sandbox records in an SQLite database in the data directory (WAL mode), written by one
/// thread that commits what is queued in one transaction. <see cref="Save"/> waits for its commit:
/// the record survives a crash of hostd once it returns, and with <c>durable</c> (a hibernate's
/// acknowledgement) a crash of the machine too, being fsynced. <see cref="SaveLater"/> and
/// <see cref="Delete"/> only queue, for the paths a client waits on (an ephemeral create is 30 µs
/// of work; a commit is hundreds): a crash in the millisecond before their commit loses that one
/// change. Writes are applied in the order they are queued.
/// Names are unique per owner: the database refuses a second record with the same pair.
/// </summary>
public sealed class SandboxStore : IDisposable
{
    private readonly SqliteConnection _db;
    private readonly BlockingCollection<Write> _queue = new();
    private readonly Thread _writer;

    private sealed record Write(string Id, SandboxRecord? Record, bool Durable, TaskCompletionSource? Done);

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
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "forkbox-store" };
        _writer.Start();
    }

    /// <summary>Inserts or replaces the record with this id, and returns once it is committed.</summary>
    public void Save(SandboxRecord r, bool durable = false)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Add(new Write(r.Id, r, durable, done));
        done.Task.GetAwaiter().GetResult();
    }

    /// <summary>Inserts or replaces the record, committed within a millisecond or so.</summary>
    public void SaveLater(SandboxRecord r) => _queue.Add(new Write(r.Id, r, false, null));

    public void Delete(string id) => _queue.Add(new Write(id, null, false, null));

    /// <summary>Every record; called at start-up, before anything is written.</summary>
    public List<SandboxRecord> LoadAll()
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = "SELECT record FROM sandboxes";
        using var reader = cmd.ExecuteReader();
        var all = new List<SandboxRecord>();
        while (reader.Read())
            all.Add(JsonSerializer.Deserialize(reader.GetString(0), StoreJson.Default.SandboxRecord)!);
        return all;
    }

    private void WriteLoop()
    {
        using var upsert = _db.CreateCommand();
        upsert.CommandText = "INSERT OR REPLACE INTO sandboxes (id, owner, name, state, record) VALUES ($id, $owner, $name, $state, $record)";
        var (id, owner, name, state, record) = (upsert.Parameters.Add("$id", SqliteType.Text), upsert.Parameters.Add("$owner", SqliteType.Text),
            upsert.Parameters.Add("$name", SqliteType.Text), upsert.Parameters.Add("$state", SqliteType.Text), upsert.Parameters.Add("$record", SqliteType.Text));
        using var delete = _db.CreateCommand();
        delete.CommandText = "DELETE FROM sandboxes WHERE id = $id";
        var deleteId = delete.Parameters.Add("$id", SqliteType.Text);
        var batch = new List<Write>();
        foreach (var first in _queue.GetConsumingEnumerable())
        {
            batch.Clear();
            batch.Add(first);
            while (batch.Count < 1000 && _queue.TryTake(out var more)) batch.Add(more);
            var durable = batch.Any(w => w.Durable);
            try
            {
                if (durable) Execute("PRAGMA synchronous=FULL");
                using (var tx = _db.BeginTransaction())
                {
                    upsert.Transaction = delete.Transaction = tx;
                    foreach (var w in batch)
                    {
                        if (w.Record is { } r)
                        {
                            (id.Value, owner.Value, name.Value, state.Value) = (r.Id, r.Owner, (object?)r.Name ?? DBNull.Value, r.State);
                            record.Value = JsonSerializer.Serialize(r, StoreJson.Default.SandboxRecord);
                            upsert.ExecuteNonQuery();
                        }
                        else
                        {
                            deleteId.Value = w.Id;
                            delete.ExecuteNonQuery();
                        }
                    }
                    tx.Commit();
                }
                if (durable) Execute("PRAGMA synchronous=NORMAL");
                foreach (var w in batch) w.Done?.TrySetResult();
            }
            catch (Exception e)
            {
                foreach (var w in batch) w.Done?.TrySetException(new IOException($"the sandbox records in {_db.DataSource} could not be written: {e.Message}", e));
            }
        }
    }

    private void Execute(string sql)
    {
        using var cmd = _db.CreateCommand();
        cmd.CommandText = sql;
        cmd.ExecuteNonQuery();
    }

    /// <summary>Commits what is queued, then closes the database.</summary>
    public void Dispose()
    {
        _queue.CompleteAdding();
        _writer.Join();
        _db.Dispose();
    }
}
