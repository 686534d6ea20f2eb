-- The target DDL, copied verbatim from the app team's DATABASE_MIGRATION_PLAN.md (## PostgreSQL Schema).
-- test_ddl.py runs it in one database and the project's generated DDL in another and compares catalogs.

CREATE TABLE users (
  id SERIAL PRIMARY KEY,
  username VARCHAR(255) UNIQUE NOT NULL,
  email VARCHAR(255) UNIQUE,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_users_username ON users(username);

CREATE TABLE agents (
  id SERIAL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  owner_id INTEGER REFERENCES users(id),
  traits JSONB NOT NULL DEFAULT '{}',
  energy INTEGER DEFAULT 100 CHECK (energy >= 0 AND energy <= 100),
  xp INTEGER DEFAULT 0 CHECK (xp >= 0),
  gene INTEGER DEFAULT 0 CHECK (gene >= 0),
  rarity VARCHAR(50) DEFAULT 'common',
  rare_trait JSONB,
  power INTEGER DEFAULT 0 CHECK (power >= 0),
  for_sale BOOLEAN DEFAULT FALSE,
  price INTEGER DEFAULT 0 CHECK (price >= 0),
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_agents_owner ON agents(owner_id);
CREATE INDEX idx_agents_for_sale ON agents(for_sale);
CREATE INDEX idx_agents_rarity ON agents(rarity);
CREATE INDEX idx_agents_traits ON agents USING GIN(traits);

CREATE TABLE user_balance (
  user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  coins INTEGER DEFAULT 0 CHECK (coins >= 0),
  updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_user_balance_user ON user_balance(user_id);

CREATE TABLE payments (
  id SERIAL PRIMARY KEY,
  user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
  amount DECIMAL(10, 2) NOT NULL CHECK (amount >= 0),
  currency VARCHAR(10) DEFAULT 'USD',
  status VARCHAR(50) DEFAULT 'pending',
  payment_method VARCHAR(50),
  transaction_id VARCHAR(255),
  stripe_session_id VARCHAR(255),
  stripe_payment_intent_id VARCHAR(255),
  coins INTEGER DEFAULT 0 CHECK (coins >= 0),
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_payments_user ON payments(user_id);
CREATE INDEX idx_payments_status ON payments(status);
CREATE INDEX idx_payments_stripe_session ON payments(stripe_session_id);
CREATE INDEX idx_payments_created ON payments(created_at);

CREATE TABLE chat_messages (
  id SERIAL PRIMARY KEY,
  agent_id INTEGER REFERENCES agents(id) ON DELETE CASCADE,
  user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
  message TEXT NOT NULL,
  role VARCHAR(50) NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_chat_agent ON chat_messages(agent_id);
CREATE INDEX idx_chat_user ON chat_messages(user_id);
CREATE INDEX idx_chat_created ON chat_messages(created_at);

CREATE TABLE battles (
  id SERIAL PRIMARY KEY,
  agent_a_id INTEGER REFERENCES agents(id) ON DELETE SET NULL,
  agent_b_id INTEGER REFERENCES agents(id) ON DELETE SET NULL,
  winner_id INTEGER REFERENCES agents(id) ON DELETE SET NULL,
  result JSONB,
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_battles_agent_a ON battles(agent_a_id);
CREATE INDEX idx_battles_agent_b ON battles(agent_b_id);
CREATE INDEX idx_battles_winner ON battles(winner_id);

CREATE TABLE marketplace_listings (
  id SERIAL PRIMARY KEY,
  agent_id INTEGER REFERENCES agents(id) ON DELETE CASCADE,
  seller_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
  price INTEGER NOT NULL CHECK (price >= 0),
  status VARCHAR(50) DEFAULT 'active' CHECK (status IN ('active', 'sold', 'cancelled')),
  created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX idx_listings_agent ON marketplace_listings(agent_id);
CREATE INDEX idx_listings_seller ON marketplace_listings(seller_id);
CREATE INDEX idx_listings_status ON marketplace_listings(status);
