-- 0001: the tables and indexes of the reference README, exactly as written there.
-- Deployed databases already have them (the website reads them), so `etl schema apply` adopts a
-- database where this SQL was run by hand instead of running it again. Never edit this file:
-- its checksum is recorded, and later migrations only add.

-- Users table
CREATE TABLE users (
    did VARCHAR(255) PRIMARY KEY,
    handle VARCHAR(255) UNIQUE NOT NULL,
    "displayName" VARCHAR(255),
    avatar TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    last_active TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    skip_user BOOLEAN DEFAULT FALSE
);

-- Posts table
CREATE TABLE posts (
    uri VARCHAR(500) PRIMARY KEY,
    did VARCHAR(255) REFERENCES users(did) ON DELETE CASCADE,
    likes INTEGER DEFAULT 0,
    replies INTEGER DEFAULT 0,
    quotes INTEGER DEFAULT 0,
    reposts INTEGER DEFAULT 0,
    "createdAt" TIMESTAMP WITH TIME ZONE NOT NULL,
    "updatedAt" TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

-- Snapshots table
CREATE TABLE snapshots (
    uuid UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    did VARCHAR(255) REFERENCES users(did) ON DELETE CASCADE,
    date DATE NOT NULL,
    followers INTEGER DEFAULT 0,
    following INTEGER DEFAULT 0,
    posts INTEGER DEFAULT 0,
    likes INTEGER DEFAULT 0,
    replies INTEGER DEFAULT 0,
    quotes INTEGER DEFAULT 0,
    reposts INTEGER DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    UNIQUE(did, date)
);

-- Views table (for tracking user activity)
CREATE TABLE views (
    id SERIAL PRIMARY KEY,
    did VARCHAR(255) REFERENCES users(did) ON DELETE CASCADE,
    date DATE NOT NULL,
    view_count INTEGER DEFAULT 1,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    UNIQUE(did, date)
);

-- Snapshot logs table
CREATE TABLE snapshot_logs (
    id INTEGER PRIMARY KEY,
    status VARCHAR(50) DEFAULT 'in_progress',
    time_started TIMESTAMP WITH TIME ZONE NOT NULL,
    time_completed TIMESTAMP WITH TIME ZONE,
    duration REAL,
    total_users INTEGER DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

-- Performance indexes
CREATE INDEX idx_users_handle ON users(handle);
CREATE INDEX idx_users_last_active ON users(last_active);
CREATE INDEX idx_posts_did ON posts(did);
CREATE INDEX idx_posts_created_at ON posts("createdAt");
CREATE INDEX idx_snapshots_did_date ON snapshots(did, date);
CREATE INDEX idx_snapshots_date ON snapshots(date);
CREATE INDEX idx_views_did_date ON views(did, date);
CREATE INDEX idx_views_date ON views(date);
